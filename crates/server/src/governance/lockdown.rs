//! The lockdown switch: revoke everything in scope now and refuse every new request, emergency
//! ones included, until it is lifted. (Being built.)
