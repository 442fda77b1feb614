//! The tamper-evident audit log, as pure functions: RFC 6962 leaf and node hashes, the Merkle
//! frontier that makes an append cost O(log n), inclusion and consistency proofs built from
//! stored subtree hashes, C2SP `tlog-checkpoint` checkpoints signed as C2SP `signed-note`s with
//! Ed25519, and the verifier that recomputes everything from the stored bytes.
//!
//! No IO and no clock: the store feeds bytes and hashes in, the server decides when to sign.

mod checkpoint;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod note;
mod proof;
mod tree;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
pub use note::{NoteError, NoteSigner, NoteVerifier, SignedNote};
pub use proof::{
    ConsistencyDoc, DocError, InclusionDoc, NodeId, ProofError, consistency_proof, inclusion_proof,
    needed_for_consistency, needed_for_inclusion, verify_consistency, verify_inclusion,
};
pub use tree::Frontier;
