//! What a run's best model said about every image of a split: its class probabilities, with
//! the images' labels. Recorded with every finished run so that ensembles
//! (`fer-lab report --ensemble K`) are formed from the database alone — no checkpoint, no GPU,
//! no data set needed — which is what comes back from a GPU machine.
//!
//! Stored compactly: a probability as a little-endian `u16` (p · 65535, rounded: an error under
//! 8 · 10⁻⁶, far below what moves an argmax between two models), a label as one byte. A split of
//! FER-2013 (3,589 images) takes 53 kB.

use crate::emotion::NUM_CLASSES;
use crate::metrics::{Confusion, Evaluation};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Class probabilities of every image of one split, in the split's order, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPredictions {
    labels: Vec<u8>,
    probs: Vec<[f32; NUM_CLASSES]>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PredictionsError {
    #[error("{what}: {n_labels} labels but {n_probs} rows of probabilities")]
    Lengths {
        what: String,
        n_labels: usize,
        n_probs: usize,
    },
    #[error("{what}: label {label} is not a class id (0–6)")]
    Label { what: String, label: u8 },
    #[error("{what}: {bytes} bytes of probabilities is not a whole number of 7-class rows")]
    Ragged { what: String, bytes: usize },
    #[error("{what}: not valid base64 ({why})")]
    Base64 { what: String, why: String },
    #[error(
        "the runs were evaluated on different images ({a} has {n_a} images, {b} has {n_b}, or their labels differ): an ensemble needs the same data"
    )]
    DifferentImages {
        a: String,
        n_a: usize,
        b: String,
        n_b: usize,
    },
    #[error("an ensemble needs at least one member")]
    Empty,
}

impl SplitPredictions {
    /// Probabilities (each row summing to about 1) and the true class of each image.
    pub fn new(
        labels: Vec<u8>,
        probs: Vec<[f32; NUM_CLASSES]>,
    ) -> Result<SplitPredictions, PredictionsError> {
        let what = "predictions".to_string();
        if labels.len() != probs.len() {
            return Err(PredictionsError::Lengths {
                what,
                n_labels: labels.len(),
                n_probs: probs.len(),
            });
        }
        if let Some(&label) = labels.iter().find(|&&l| usize::from(l) >= NUM_CLASSES) {
            return Err(PredictionsError::Label { what, label });
        }
        Ok(SplitPredictions { labels, probs })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn probs(&self) -> &[[f32; NUM_CLASSES]] {
        &self.probs
    }

    /// The predicted class of every image (the first of equal maxima).
    pub fn predicted(&self) -> impl Iterator<Item = usize> + '_ {
        self.probs
            .iter()
            .map(|p| (0..NUM_CLASSES).fold(0, |best, c| if p[c] > p[best] { c } else { best }))
    }

    /// Accuracy, per-class metrics and the confusion matrix; the loss is the mean negative log
    /// of the true class's probability. The evaluation carries these predictions.
    pub fn evaluate(self) -> Evaluation {
        let mut confusion = Confusion::default();
        let mut loss = 0.0;
        for ((&truth, pred), p) in self.labels.iter().zip(self.predicted()).zip(&self.probs) {
            let truth = usize::from(truth);
            confusion.add(truth, pred);
            loss -= f64::from(p[truth].max(1e-12)).ln();
        }
        let n = self.len();
        let mut eval =
            Evaluation::from_confusion(confusion, if n == 0 { 0.0 } else { loss / n as f64 });
        eval.predictions = Some(self);
        eval
    }

    /// The members' probabilities averaged image by image (soft voting). Every member must
    /// have predicted the same images: same count, same labels. A member's name (its run) is
    /// what an error calls it.
    pub fn average(
        members: &[(&str, &SplitPredictions)],
    ) -> Result<SplitPredictions, PredictionsError> {
        let (first_name, first) = members.first().ok_or(PredictionsError::Empty)?;
        for (name, m) in &members[1..] {
            if m.labels != first.labels {
                return Err(PredictionsError::DifferentImages {
                    a: first_name.to_string(),
                    n_a: first.len(),
                    b: name.to_string(),
                    n_b: m.len(),
                });
            }
        }
        let k = members.len() as f32;
        let probs = (0..first.len())
            .map(|i| {
                let mut sum = [0f32; NUM_CLASSES];
                for (_, m) in members {
                    for (s, p) in sum.iter_mut().zip(m.probs[i]) {
                        *s += p;
                    }
                }
                sum.map(|s| s / k)
            })
            .collect();
        Ok(SplitPredictions {
            labels: first.labels.clone(),
            probs,
        })
    }

    /// The labels as stored: one byte per image.
    pub fn label_bytes(&self) -> &[u8] {
        &self.labels
    }

    /// The probabilities as stored: 7 little-endian `u16` per image, p · 65535 rounded.
    pub fn prob_bytes(&self) -> Vec<u8> {
        self.probs
            .iter()
            .flatten()
            .flat_map(|&p| ((p.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes())
            .collect()
    }

    /// Reads what [`label_bytes`](Self::label_bytes) and [`prob_bytes`](Self::prob_bytes)
    /// wrote; `what` names the source in an error.
    pub fn from_bytes(
        what: &str,
        labels: Vec<u8>,
        probs: &[u8],
    ) -> Result<SplitPredictions, PredictionsError> {
        let row = 2 * NUM_CLASSES;
        if !probs.len().is_multiple_of(row) {
            return Err(PredictionsError::Ragged {
                what: what.into(),
                bytes: probs.len(),
            });
        }
        let probs = probs
            .chunks_exact(row)
            .map(|r| {
                std::array::from_fn(|c| {
                    f32::from(u16::from_le_bytes([r[2 * c], r[2 * c + 1]])) / 65535.0
                })
            })
            .collect();
        SplitPredictions::new(labels, probs).map_err(|e| match e {
            PredictionsError::Lengths {
                n_labels, n_probs, ..
            } => PredictionsError::Lengths {
                what: what.into(),
                n_labels,
                n_probs,
            },
            PredictionsError::Label { label, .. } => PredictionsError::Label {
                what: what.into(),
                label,
            },
            other => other,
        })
    }
}

/// In a journal line: the stored bytes, base64-encoded (a third of the JSON numbers' size).
#[derive(Serialize, Deserialize)]
struct Encoded {
    labels: String,
    probs: String,
}

impl Serialize for SplitPredictions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Encoded {
            labels: STANDARD.encode(&self.labels),
            probs: STANDARD.encode(self.prob_bytes()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SplitPredictions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Encoded::deserialize(d)?;
        let decode = |field: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|why| PredictionsError::Base64 {
                    what: format!("predictions.{field}"),
                    why: why.to_string(),
                })
                .map_err(serde::de::Error::custom)
        };
        let labels = decode("labels", &e.labels)?;
        let probs = decode("probs", &e.probs)?;
        SplitPredictions::from_bytes("predictions", labels, &probs)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(labels: &[u8], probs: &[[f32; 7]]) -> SplitPredictions {
        SplitPredictions::new(labels.to_vec(), probs.to_vec()).unwrap()
    }

    fn one_hot(c: usize, p: f32) -> [f32; 7] {
        let mut row = [(1.0 - p) / 6.0; 7];
        row[c] = p;
        row
    }

    #[test]
    fn evaluates_like_the_confusion_it_implies() {
        // Truths 0, 1, 2; predictions 0, 1, 0.
        let p = preds(
            &[0, 1, 2],
            &[one_hot(0, 0.9), one_hot(1, 0.6), one_hot(0, 0.5)],
        );
        let e = p.clone().evaluate();
        assert!((e.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.confusion.counts[2][0], 1);
        let want = -((0.9f64).ln() + (0.6f64).ln() + (0.5f64 / 6.0).ln()) / 3.0;
        assert!((e.loss - want).abs() < 1e-6, "{} vs {want}", e.loss);
        assert_eq!(e.predictions, Some(p));
    }

    #[test]
    fn averaging_can_fix_what_each_member_gets_wrong() {
        // Member a is sure and wrong on image 1, member b is sure and wrong on image 0; each
        // is unsure where it is right. Soft voting gets both right only if it averages.
        let labels = [0, 1];
        let a = preds(&labels, &[one_hot(0, 0.9), one_hot(3, 0.4)]);
        let b = preds(&labels, &[one_hot(3, 0.4), one_hot(1, 0.9)]);
        assert_eq!(a.clone().evaluate().accuracy, 0.5);
        assert_eq!(b.clone().evaluate().accuracy, 0.5);
        let avg = SplitPredictions::average(&[("a", &a), ("b", &b)]).unwrap();
        assert_eq!(avg.clone().evaluate().accuracy, 1.0);
        assert!((avg.probs()[0][0] - (0.9 + 0.1) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn members_must_have_seen_the_same_images() {
        let a = preds(&[0, 1], &[one_hot(0, 0.9), one_hot(1, 0.9)]);
        let b = preds(&[0, 2], &[one_hot(0, 0.9), one_hot(1, 0.9)]);
        let e = SplitPredictions::average(&[("run-a", &a), ("run-b", &b)]).unwrap_err();
        assert!(e.to_string().contains("run-b"), "{e}");
        assert_eq!(
            SplitPredictions::average(&[]).unwrap_err(),
            PredictionsError::Empty
        );
        assert!(SplitPredictions::new(vec![7], vec![one_hot(0, 1.0)]).is_err());
        assert!(SplitPredictions::new(vec![0, 1], vec![one_hot(0, 1.0)]).is_err());
    }

    #[test]
    fn stored_bytes_round_trip_within_a_quantum() {
        let p = preds(&[6, 0], &[one_hot(6, 0.7312), [1.0 / 7.0; 7]]);
        let bytes = p.prob_bytes();
        assert_eq!(bytes.len(), 2 * 7 * 2);
        let back = SplitPredictions::from_bytes("t", p.label_bytes().to_vec(), &bytes).unwrap();
        assert_eq!(back.labels(), p.labels());
        for (a, b) in back
            .probs()
            .iter()
            .flatten()
            .zip(p.probs().iter().flatten())
        {
            assert!((a - b).abs() <= 0.5 / 65535.0 + 1e-7, "{a} vs {b}");
        }
        let e = SplitPredictions::from_bytes("run x val", vec![0], &bytes[..13]).unwrap_err();
        assert!(e.to_string().starts_with("run x val: 13 bytes"), "{e}");
    }

    #[test]
    fn journals_carry_them_as_base64() {
        let p = preds(
            &[1, 2, 3],
            &[one_hot(1, 0.5), one_hot(2, 0.25), one_hot(3, 1.0)],
        );
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.starts_with("{\"labels\":\"AQID\""), "{json}");
        let back: SplitPredictions = serde_json::from_str(&json).unwrap();
        assert_eq!(back.prob_bytes(), p.prob_bytes());
        let bad = serde_json::from_str::<SplitPredictions>(r#"{"labels":"AQID","probs":"!!"}"#)
            .unwrap_err();
        assert!(bad.to_string().contains("base64"), "{bad}");
    }
}
