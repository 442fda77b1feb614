//! Owner attestation of roles: a member of the owner group re-confirms, on a schedule, that a role
//! is still needed and correctly scoped. (Being built.)
