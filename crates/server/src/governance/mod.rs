//! Governance after the glass is broken: post-use reviews and the evidence they rest on
//! (`reviews`), owner attestation of roles (`attestations`), drills of a role's whole path
//! (`drills`) and the lockdown switch (`lockdown`). The rules are the core's; these services
//! gather what a rule needs, ask it, and write what it decided.

pub mod attestations;
pub mod drills;
pub mod evidence;
pub mod lockdown;
pub mod reviews;
