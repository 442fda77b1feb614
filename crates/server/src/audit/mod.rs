//! The audit log's outside face: signed checkpoints published outside the database
//! ([`checkpoint`]), and the offline verifier behind `breakglass audit verify` ([`verify`]). The
//! log itself (canonical events, the Merkle tree, appends in the same transaction as every change)
//! is the `breakglass-audit` crate's and the store's.

pub mod checkpoint;
pub mod verify;
