//! Replays every saved fuzz input (`fuzz/corpus/<target>/*`) through the same entry points the
//! fuzz targets call, so CI covers them on stable Rust. A panic fails the test.

#![allow(clippy::panic, reason = "a test fails loudly on anything unexpected")]
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus `{}`: {e}", dir.display()))
    {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()));
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn note_corpus_replays_without_panicking() {
    assert!(replay("note", breakglass_audit::fuzzing::note) >= 5);
}

#[test]
fn proof_corpus_replays_without_panicking() {
    assert!(replay("proof", breakglass_audit::fuzzing::proof) >= 5);
}

#[test]
fn the_proof_documents_we_print_decode_and_verify() {
    use breakglass_audit::{Frontier, InclusionDoc, inclusion_proof, leaf_hash};
    let mut f = Frontier::new();
    let mut stored = std::collections::BTreeMap::new();
    for i in 0..14u8 {
        stored.extend(f.append(leaf_hash(&[i])));
    }
    let proof = inclusion_proof(3, 14, &mut |id| stored.get(&id).copied()).unwrap_or_default();
    let doc = serde_json::json!({
        "index": 3, "tree_size": 14, "leaf_hash": leaf_hash(&[3]).to_base64(),
        "root_hash": f.root().to_base64(),
        "proof": proof.iter().map(|h| h.to_base64()).collect::<Vec<_>>(),
    });
    let parsed = InclusionDoc::from_json(&doc.to_string()).unwrap_or_else(|e| panic!("{e}"));
    assert!(parsed.verify());
    assert!(InclusionDoc::from_json("{}").is_err());
}
