//! `pad_sequences` with Keras semantics.

use serde::{Deserialize, Serialize};

/// Which end of a sequence is padded or cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The start (Keras's default): a long text keeps its *last* tokens; padding goes in front.
    #[default]
    Pre,
    /// The end.
    Post,
}

impl std::str::FromStr for Side {
    type Err = crate::TextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pre" => Ok(Side::Pre),
            "post" => Ok(Side::Post),
            other => Err(crate::TextError::Config(format!(
                "unknown side '{other}': use 'pre' or 'post'"
            ))),
        }
    }
}

/// How sequences are brought to one length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadSpec {
    /// Target length.
    pub maxlen: usize,
    /// Where padding goes.
    pub padding: Side,
    /// Which end is cut from longer sequences.
    pub truncating: Side,
    /// The padding id.
    pub value: u32,
}

impl PadSpec {
    /// Keras's defaults for a given length: pre-padding, pre-truncation, value 0.
    pub fn keras(maxlen: usize) -> Self {
        PadSpec {
            maxlen,
            padding: Side::Pre,
            truncating: Side::Pre,
            value: 0,
        }
    }

    /// The part of `seq` that survives truncation.
    pub fn truncate<'a>(&self, seq: &'a [u32]) -> &'a [u32] {
        if seq.len() <= self.maxlen {
            seq
        } else {
            match self.truncating {
                Side::Pre => &seq[seq.len() - self.maxlen..],
                Side::Post => &seq[..self.maxlen],
            }
        }
    }

    /// Writes `seq`, padded/truncated to `maxlen`, into `out` (which must have length `maxlen`).
    pub fn pad_into(&self, seq: &[u32], out: &mut [u32]) {
        let kept = self.truncate(seq);
        let n = kept.len().min(out.len());
        let pad = out.len() - n;
        match self.padding {
            Side::Pre => {
                out[..pad].fill(self.value);
                out[pad..].copy_from_slice(&kept[..n]);
            }
            Side::Post => {
                out[..n].copy_from_slice(&kept[..n]);
                out[n..].fill(self.value);
            }
        }
    }
}

/// Keras `pad_sequences`: a row-major `[n, maxlen]` matrix. `maxlen = None` uses the longest
/// sequence's length.
pub fn pad_sequences(
    seqs: &[Vec<u32>],
    maxlen: Option<usize>,
    padding: Side,
    truncating: Side,
    value: u32,
) -> Vec<Vec<u32>> {
    let maxlen = maxlen.unwrap_or_else(|| seqs.iter().map(Vec::len).max().unwrap_or(0));
    let spec = PadSpec {
        maxlen,
        padding,
        truncating,
        value,
    };
    seqs.iter()
        .map(|s| {
            let mut row = vec![value; maxlen];
            spec.pad_into(s, &mut row);
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_pads_and_keeps_last_tokens() {
        let out = pad_sequences(
            &[vec![1, 2, 3, 4], vec![5]],
            Some(3),
            Side::Pre,
            Side::Pre,
            0,
        );
        assert_eq!(out, vec![vec![2, 3, 4], vec![0, 0, 5]]);
    }

    #[test]
    fn post_pads_and_cuts_the_end() {
        let out = pad_sequences(
            &[vec![1, 2, 3, 4], vec![5]],
            Some(3),
            Side::Post,
            Side::Post,
            9,
        );
        assert_eq!(out, vec![vec![1, 2, 3], vec![5, 9, 9]]);
    }
}
