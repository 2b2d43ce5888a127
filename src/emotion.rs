//! The seven FER-2013 classes and the one place that maps names to ids.
//!
//! Ids follow the Kaggle challenge CSV (0 Angry … 6 Neutral). Folder trees name the classes
//! instead, and their alphabetical order is *not* the id order (neutral sorts before sad), so
//! importers must go through [`Emotion::from_folder_name`], never through folder order.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of emotion classes in FER-2013.
pub const NUM_CLASSES: usize = 7;

/// One FER-2013 emotion class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Angry = 0,
    Disgust = 1,
    Fear = 2,
    Happy = 3,
    Sad = 4,
    Surprise = 5,
    Neutral = 6,
}

impl Emotion {
    /// All classes in id order.
    pub const ALL: [Emotion; NUM_CLASSES] = [
        Emotion::Angry,
        Emotion::Disgust,
        Emotion::Fear,
        Emotion::Happy,
        Emotion::Sad,
        Emotion::Surprise,
        Emotion::Neutral,
    ];

    /// The class id used by the Kaggle CSV and by every tensor in fer-lab.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The class with this id, if the id is in 0..7.
    pub fn from_id(id: u8) -> Option<Emotion> {
        Emotion::ALL.get(usize::from(id)).copied()
    }

    /// Human-readable name ("Angry").
    pub fn name(self) -> &'static str {
        match self {
            Emotion::Angry => "Angry",
            Emotion::Disgust => "Disgust",
            Emotion::Fear => "Fear",
            Emotion::Happy => "Happy",
            Emotion::Sad => "Sad",
            Emotion::Surprise => "Surprise",
            Emotion::Neutral => "Neutral",
        }
    }

    /// Maps a class folder name to its class, case-insensitively.
    ///
    /// Accepts the names used by the FER-2013 downloads in the wild ("angry", "disgusted",
    /// "fearful", "happiness", "surprised", …).
    pub fn from_folder_name(name: &str) -> Option<Emotion> {
        let lower = name.trim().to_ascii_lowercase();
        let emotion = match lower.as_str() {
            "angry" | "anger" | "0" => Emotion::Angry,
            "disgust" | "disgusted" | "1" => Emotion::Disgust,
            "fear" | "fearful" | "scared" | "2" => Emotion::Fear,
            "happy" | "happiness" | "3" => Emotion::Happy,
            "sad" | "sadness" | "4" => Emotion::Sad,
            "surprise" | "surprised" | "5" => Emotion::Surprise,
            "neutral" | "6" => Emotion::Neutral,
            _ => return None,
        };
        Some(emotion)
    }
}

impl fmt::Display for Emotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_kaggle_csv() {
        let names: Vec<_> = Emotion::ALL.iter().map(|e| (e.id(), e.name())).collect();
        assert_eq!(
            names,
            vec![
                (0, "Angry"),
                (1, "Disgust"),
                (2, "Fear"),
                (3, "Happy"),
                (4, "Sad"),
                (5, "Surprise"),
                (6, "Neutral")
            ]
        );
    }

    #[test]
    fn folder_names_map_by_name_not_by_order() {
        // Alphabetically neutral comes before sad; the ids must not follow that.
        assert_eq!(Emotion::from_folder_name("neutral"), Some(Emotion::Neutral));
        assert_eq!(Emotion::from_folder_name("Neutral").unwrap().id(), 6);
        assert_eq!(Emotion::from_folder_name("sad").unwrap().id(), 4);
        assert_eq!(
            Emotion::from_folder_name("SURPRISED"),
            Some(Emotion::Surprise)
        );
        assert_eq!(Emotion::from_folder_name("contempt"), None);
    }

    #[test]
    fn from_id_rejects_out_of_range() {
        assert_eq!(Emotion::from_id(6), Some(Emotion::Neutral));
        assert_eq!(Emotion::from_id(7), None);
    }
}
