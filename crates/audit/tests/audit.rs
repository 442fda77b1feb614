//! The audit tree beyond examples: a naive recursive RFC 6962 model written here, property tests
//! against it, independent verifiers (Cloudflare's `tlog_tiles` and `signed_note`, ports of Go's
//! `sumdb/tlog` and `sumdb/note`), and golden vectors in `testdata/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails loudly on anything unexpected"
)]

use std::collections::BTreeMap;

use breakglass_audit::{
    Checkpoint, Frontier, Hash, NodeId, NoteSigner, consistency_proof, inclusion_proof, leaf_hash,
    node_hash, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// ---- the naive model: RFC 6962 section 2.1, literally ----

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> [u8; 32] {
    match d.len() {
        0 => Sha256::digest(b"").into(),
        1 => Sha256::digest([&[0u8][..], &d[0]].concat()).into(),
        n => {
            let k = k_of(n);
            Sha256::digest([&[1u8][..], &mth(&d[..k]), &mth(&d[k..])].concat()).into()
        }
    }
}

fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        [path(m, &d[..k]), vec![mth(&d[k..])]].concat()
    } else {
        [path(m - k, &d[k..]), vec![mth(&d[..k])]].concat()
    }
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        [subproof(m, &d[..k], b), vec![mth(&d[k..])]].concat()
    } else {
        [subproof(m - k, &d[k..], false), vec![mth(&d[..k])]].concat()
    }
}

// ---- our implementation, fed from stored subtree hashes ----

struct Log {
    leaves: Vec<Vec<u8>>,
    stored: BTreeMap<NodeId, Hash>,
    roots: Vec<Hash>,
}

fn build(n: usize) -> Log {
    let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect();
    let mut f = Frontier::new();
    let mut stored = BTreeMap::new();
    let mut roots = vec![f.root()];
    for l in &leaves {
        stored.extend(f.append(leaf_hash(l)));
        roots.push(f.root());
    }
    Log {
        leaves,
        stored,
        roots,
    }
}

fn ours_inclusion(log: &Log, index: u64, size: u64) -> Vec<Hash> {
    inclusion_proof(index, size, &mut |id| log.stored.get(&id).copied()).unwrap()
}

fn ours_consistency(log: &Log, from: u64, to: u64) -> Vec<Hash> {
    consistency_proof(from, to, &mut |id| log.stored.get(&id).copied()).unwrap()
}

fn raw(v: &[Hash]) -> Vec<[u8; 32]> {
    v.iter().map(|h| h.0).collect()
}

fn tt(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn roots_and_proofs_match_the_naive_model_and_an_independent_verifier(n in 1usize..200, a in 0usize..1000, b in 0usize..1000) {
        let log = build(n);
        let size = 1 + b % n;
        let index = a % size;
        let from = 1 + a % size;
        let d = &log.leaves[..size];
        prop_assert_eq!(log.roots[size].0, mth(d));

        let incl = ours_inclusion(&log, index as u64, size as u64);
        prop_assert_eq!(raw(&incl), path(index, d));
        prop_assert!(verify_inclusion(index as u64, size as u64, &leaf_hash(&d[index]), &incl, &log.roots[size]));
        let theirs: Vec<tlog_tiles::Hash> = incl.iter().map(tt).collect();
        prop_assert!(tlog_tiles::check_record(&theirs, size as u64, tt(&log.roots[size]), index as u64, tt(&leaf_hash(&d[index]))).is_ok());

        let cons = ours_consistency(&log, from as u64, size as u64);
        prop_assert_eq!(raw(&cons), subproof(from, d, true));
        prop_assert!(verify_consistency(from as u64, size as u64, &log.roots[from], &log.roots[size], &cons));
        let theirs: Vec<tlog_tiles::Hash> = cons.iter().map(tt).collect();
        prop_assert!(tlog_tiles::check_tree(&theirs, size as u64, tt(&log.roots[size]), from as u64, tt(&log.roots[from])).is_ok());
    }

    #[test]
    fn damaged_proofs_do_not_verify(n in 2usize..100, a in 0usize..1000, flip in 0usize..64) {
        let log = build(n);
        let index = (a % n) as u64;
        let mut incl = ours_inclusion(&log, index, n as u64);
        let leaf = leaf_hash(&log.leaves[index as usize]);
        if !incl.is_empty() {
            let i = flip % incl.len();
            incl[i].0[flip % 32] ^= 1;
            prop_assert!(!verify_inclusion(index, n as u64, &leaf, &incl, &log.roots[n]));
        }
        let good = ours_inclusion(&log, index, n as u64);
        prop_assert!(!verify_inclusion(index, n as u64, &leaf_hash(b"other"), &good, &log.roots[n]));
        let from = 1 + (a % (n - 1)) as u64;
        let mut cons = ours_consistency(&log, from, n as u64);
        prop_assert!(!verify_consistency(from, n as u64, &log.roots[from as usize], &log.roots[n - 1], &cons), "the wrong new root");
        if !cons.is_empty() {
            let i = flip % cons.len();
            cons[i].0[0] ^= 0x80;
            prop_assert!(!verify_consistency(from, n as u64, &log.roots[from as usize], &log.roots[n], &cons));
        }
    }
}

#[test]
fn edge_cases() {
    let log = build(8);
    assert!(inclusion_proof(8, 8, &mut |id| log.stored.get(&id).copied()).is_err());
    assert!(consistency_proof(5, 4, &mut |id| log.stored.get(&id).copied()).is_err());
    assert!(ours_consistency(&log, 8, 8).is_empty());
    assert!(verify_consistency(8, 8, &log.roots[8], &log.roots[8], &[]));
    assert!(!verify_consistency(8, 8, &log.roots[8], &log.roots[7], &[]));
    let missing = inclusion_proof(3, 8, &mut |_| None).unwrap_err();
    assert!(missing.to_string().contains("is missing"));
    assert_eq!(
        node_hash(
            &log.stored[&NodeId { level: 0, index: 0 }],
            &log.stored[&NodeId { level: 0, index: 1 }]
        ),
        log.stored[&NodeId { level: 1, index: 0 }]
    );
}

/// Our signed checkpoints verify with an independent C2SP signed-note implementation, and our
/// checkpoint text parses with an independent C2SP checkpoint parser.
#[test]
fn checkpoints_verify_with_an_independent_c2sp_implementation() {
    let log = build(13);
    let signer = NoteSigner::new("breakglass/test/0a1b2c3d", &[42; 32]).unwrap();
    let cp = Checkpoint {
        origin: "breakglass/test/0a1b2c3d".into(),
        size: 13,
        root: log.roots[13],
    };
    let note = signer.sign(&cp.to_text()).unwrap();

    let key = signer.verifier().encode();
    let verifier =
        signed_note::StandardVerifier::new(&key).expect("their parser accepts our verifier key");
    let parsed =
        signed_note::Note::from_bytes(note.as_bytes()).expect("their parser accepts our note");
    let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    let (verified, _) = parsed
        .verify(&list)
        .expect("their verifier accepts our signature");
    assert_eq!(verified.len(), 1);

    let theirs = tlog_tiles::Checkpoint::from_bytes(parsed.text())
        .expect("their checkpoint parser accepts ours");
    assert_eq!(theirs.origin(), "breakglass/test/0a1b2c3d");
    assert_eq!(theirs.size(), 13);
    assert_eq!(theirs.hash().0, log.roots[13].0);

    // and the other way round: a note they sign verifies with our verifier
    let (skey, vkey) = signed_note::generate_key(&mut rand_core_06::OsRng, "them");
    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let mut n = signed_note::Note::new(
        b"them\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        &[],
    )
    .unwrap();
    n.add_sigs(&[&signer]).unwrap();
    let ours = breakglass_audit::NoteVerifier::parse(&vkey).unwrap();
    let parsed =
        breakglass_audit::SignedNote::parse(std::str::from_utf8(&n.to_bytes()).unwrap()).unwrap();
    assert!(ours.verify(&parsed).is_ok());
}

/// Golden vectors: leaves, roots and every inclusion and consistency proof for sizes 1 to 17.
/// Set `BREAKGLASS_BLESS=1` to rewrite the file after a deliberate change (then review the diff).
#[test]
fn golden_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/audit-tree-vectors.json");
    let log = build(17);
    let mut sizes = Vec::new();
    for size in 1..=17u64 {
        let d = &log.leaves[..size as usize];
        assert_eq!(
            log.roots[size as usize].0,
            mth(d),
            "model agrees at size {size}"
        );
        let inclusion: Vec<Vec<String>> = (0..size)
            .map(|i| {
                ours_inclusion(&log, i, size)
                    .iter()
                    .map(Hash::to_base64)
                    .collect()
            })
            .collect();
        let consistency: Vec<Vec<String>> = (1..size)
            .map(|m| {
                ours_consistency(&log, m, size)
                    .iter()
                    .map(Hash::to_base64)
                    .collect()
            })
            .collect();
        sizes.push(serde_json::json!({
            "size": size,
            "root": log.roots[size as usize].to_base64(),
            "inclusion": inclusion,
            "consistency_from_1": consistency,
        }));
    }
    let leaves: Vec<String> = log
        .leaves
        .iter()
        .map(|l| String::from_utf8(l.clone()).unwrap())
        .collect();
    let doc = serde_json::json!({
        "about": "RFC 6962 Merkle tree vectors: leaf i is the UTF-8 string `leaf-i`; leaf hash = SHA-256(0x00 || bytes); proofs are base64 hashes in RFC 6962 order; consistency_from_1[m-1] proves size m to size `size`",
        "leaves": leaves,
        "sizes": sizes,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("BREAKGLASS_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .expect("testdata/audit-tree-vectors.json (run with BREAKGLASS_BLESS=1 once)");
    // Compared as JSON values: key order depends on serde_json features other crates enable.
    let want: serde_json::Value = serde_json::from_str(&want).unwrap();
    assert_eq!(
        doc, want,
        "the tree or proofs changed; if deliberate, re-bless and review"
    );
}
