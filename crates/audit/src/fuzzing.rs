//! Entry points shared by the `fuzz/` targets and by the tests that replay their corpora, so CI
//! exercises every saved input on stable Rust. Each must return normally on any input.

use crate::checkpoint::Checkpoint;
use crate::note::{NoteSigner, NoteVerifier, SignedNote};
use crate::proof::{ConsistencyDoc, InclusionDoc};

/// Parses a signed note and the checkpoint inside it, and verifies it with a fixed key.
pub fn note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        let _ = Checkpoint::parse(&note.text);
        if let Ok(signer) = NoteSigner::new("fuzz", &[7; 32]) {
            let _ = signer.verifier().verify(&note);
        }
    }
    let _ = Checkpoint::parse(text);
    let _ = NoteVerifier::parse(text);
}

/// Decodes inclusion and consistency proof documents (the JSON `audit prove` and
/// `audit consistency` print) and checks them.
pub fn proof(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = InclusionDoc::from_json(text) {
        let _ = p.verify();
    }
    if let Ok(p) = ConsistencyDoc::from_json(text) {
        let _ = p.verify(&crate::EMPTY_ROOT, &crate::EMPTY_ROOT);
    }
}
