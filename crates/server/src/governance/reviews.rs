//! Post-use reviews: every grant that became active owes one once it ends, with the evidence
//! assembled by the broker and proven against the signed log. (Being built.)
