//! Drills: a real grant, flagged `drill`, through a role's whole path, proving it works before
//! the day it is needed. (Being built.)
