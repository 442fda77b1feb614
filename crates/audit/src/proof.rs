//! Inclusion and consistency proofs (RFC 6962 section 2.1.1 and 2.1.2; verification as in
//! RFC 9162 section 2.1.3.2 and 2.1.4.2), built from stored subtree hashes.
//!
//! Proofs are built in two passes so the caller can fetch hashes in one batch: `needed_for_*`
//! lists the stored subtree hashes a proof reads (the algorithm's path never depends on hash
//! values), then `*_proof` builds it from them.

use std::collections::BTreeSet;

use crate::hash::{Hash, node_hash};

/// A perfect subtree: leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("cannot prove consistency from size {from} to the smaller size {to}")]
    SizesOutOfOrder { from: u64, to: u64 },
    #[error("the stored hash of subtree (level {}, index {}) is missing", .0.level, .0.index)]
    MissingHash(NodeId),
}

type Get<'a> = dyn FnMut(NodeId) -> Option<Hash> + 'a;

/// The largest power of two strictly less than `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[lo, hi)`. In every range RFC 6962's recursion visits, a power-of-two range
/// starts at a multiple of its size, so it is one stored subtree.
fn mth(lo: u64, hi: u64, get: &mut Get<'_>) -> Result<Hash, ProofError> {
    let n = hi - lo;
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        let id = NodeId {
            level,
            index: lo >> level,
        };
        return get(id).ok_or(ProofError::MissingHash(id));
    }
    let k = split(n);
    Ok(node_hash(&mth(lo, lo + k, get)?, &mth(lo + k, hi, get)?))
}

fn path(
    m: u64,
    lo: u64,
    hi: u64,
    get: &mut Get<'_>,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, lo, lo + k, get, out)?;
        out.push(mth(lo + k, hi, get)?);
    } else {
        path(m - k, lo + k, hi, get, out)?;
        out.push(mth(lo, lo + k, get)?);
    }
    Ok(())
}

fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    get: &mut Get<'_>,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(mth(lo, hi, get)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, get, out)?;
        out.push(mth(lo + k, hi, get)?);
    } else {
        subproof(m - k, lo + k, hi, false, get, out)?;
        out.push(mth(lo, lo + k, get)?);
    }
    Ok(())
}

/// The audit path for leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(index: u64, size: u64, get: &mut Get<'_>) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index, 0, size, get, &mut out)?;
    Ok(out)
}

/// The proof that the tree of size `from` is a prefix of the tree of size `to`.
pub fn consistency_proof(from: u64, to: u64, get: &mut Get<'_>) -> Result<Vec<Hash>, ProofError> {
    if from > to {
        return Err(ProofError::SizesOutOfOrder { from, to });
    }
    let mut out = Vec::new();
    if from == 0 || from == to {
        return Ok(out);
    }
    subproof(from, 0, to, true, get, &mut out)?;
    Ok(out)
}

fn needed(
    run: impl FnOnce(&mut Get<'_>) -> Result<Vec<Hash>, ProofError>,
) -> Result<BTreeSet<NodeId>, ProofError> {
    let mut ids = BTreeSet::new();
    let mut record = |id: NodeId| {
        ids.insert(id);
        Some(Hash([0; 32]))
    };
    run(&mut record)?;
    Ok(ids)
}

/// The stored subtree hashes [`inclusion_proof`] reads.
pub fn needed_for_inclusion(index: u64, size: u64) -> Result<BTreeSet<NodeId>, ProofError> {
    needed(|get| inclusion_proof(index, size, get))
}

/// The stored subtree hashes [`consistency_proof`] reads.
pub fn needed_for_consistency(from: u64, to: u64) -> Result<BTreeSet<NodeId>, ProofError> {
    needed(|get| consistency_proof(from, to, get))
}

/// RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 section 2.1.4.2.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if from == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *from_root && sr == *to_root
}

/// The JSON inclusion proof `audit prove` prints: `index`, `tree_size`, `leaf_hash`,
/// `root_hash` and `proof`, hashes in base64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionDoc {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub root_hash: Hash,
    pub proof: Vec<Hash>,
}

/// The JSON consistency proof `audit consistency` prints: `from`, `to` and `proof`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyDoc {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<Hash>,
}

/// The most hashes a proof for a tree of 2^64 leaves can need, with room to spare.
const MAX_PROOF_HASHES: usize = 130;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("proof document is malformed: {0}")]
pub struct DocError(&'static str);

fn field_u64(v: &serde_json::Value, k: &'static str) -> Result<u64, DocError> {
    v.get(k)
        .and_then(serde_json::Value::as_u64)
        .ok_or(DocError(k))
}

fn field_hash(v: &serde_json::Value, k: &'static str) -> Result<Hash, DocError> {
    v.get(k)
        .and_then(serde_json::Value::as_str)
        .and_then(Hash::from_base64)
        .ok_or(DocError(k))
}

fn field_proof(v: &serde_json::Value) -> Result<Vec<Hash>, DocError> {
    let list = v
        .get("proof")
        .and_then(serde_json::Value::as_array)
        .ok_or(DocError("proof"))?;
    if list.len() > MAX_PROOF_HASHES {
        return Err(DocError("proof is too long"));
    }
    list.iter()
        .map(|h| {
            h.as_str()
                .and_then(Hash::from_base64)
                .ok_or(DocError("proof"))
        })
        .collect()
}

impl InclusionDoc {
    pub fn from_json(text: &str) -> Result<Self, DocError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| DocError("not JSON"))?;
        Ok(Self {
            index: field_u64(&v, "index")?,
            tree_size: field_u64(&v, "tree_size")?,
            leaf_hash: field_hash(&v, "leaf_hash")?,
            root_hash: field_hash(&v, "root_hash")?,
            proof: field_proof(&v)?,
        })
    }

    pub fn verify(&self) -> bool {
        verify_inclusion(
            self.index,
            self.tree_size,
            &self.leaf_hash,
            &self.proof,
            &self.root_hash,
        )
    }
}

impl ConsistencyDoc {
    pub fn from_json(text: &str) -> Result<Self, DocError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| DocError("not JSON"))?;
        Ok(Self {
            from: field_u64(&v, "from")?,
            to: field_u64(&v, "to")?,
            proof: field_proof(&v)?,
        })
    }

    /// Checks the proof against the two roots the caller trusts (from signed checkpoints).
    pub fn verify(&self, from_root: &Hash, to_root: &Hash) -> bool {
        verify_consistency(self.from, self.to, from_root, to_root, &self.proof)
    }
}
