//! The model families by name: the one place a family's name is written. What a family *does*
//! is its [`crate::families::ModelFamily`] implementation, found by [`crate::families::of`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ModelError;

/// A model family, as `--model` names it and the model file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The reference `Embedding → LSTM → Dense` (Keras's).
    Lstm,
    /// The reference model with a GRU.
    Gru,
    /// The reference model with a bidirectional LSTM.
    BiLstm,
    /// TextCNN (Kim 2014).
    Cnn,
    /// fastText's bag of n-grams.
    FastText,
    /// TF-IDF and a linear model (logistic regression or a linear SVM).
    Linear,
    /// A frozen pretrained sentence encoder and a linear head.
    Encoder,
    /// A sentence encoder fine-tuned contrastively on pairs of examples, then a linear head
    /// (SetFit).
    SetFit,
    /// No training rows: a text's similarity to each label's name and description.
    ZeroShot,
}

impl Family {
    /// Every family, in the order help texts list them.
    pub const ALL: [Family; 9] = [
        Family::Lstm,
        Family::Gru,
        Family::BiLstm,
        Family::Cnn,
        Family::FastText,
        Family::Linear,
        Family::Encoder,
        Family::SetFit,
        Family::ZeroShot,
    ];

    /// The name `--model` takes and the model file records.
    pub fn name(self) -> &'static str {
        match self {
            Family::Lstm => "lstm",
            Family::Gru => "gru",
            Family::BiLstm => "bilstm",
            Family::Cnn => "cnn",
            Family::FastText => "fasttext",
            Family::Linear => "linear",
            Family::Encoder => "encoder",
            Family::SetFit => "setfit",
            Family::ZeroShot => "zeroshot",
        }
    }

    /// The family called `name`.
    pub fn parse(name: &str) -> Result<Family, ModelError> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                ModelError::Setting(format!(
                    "unknown model '{name}': use {}",
                    Family::names().join(", ")
                ))
            })
    }

    /// Every family's name.
    pub fn names() -> Vec<&'static str> {
        Family::ALL.iter().map(|f| f.name()).collect()
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Family {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::parse(s)
    }
}

impl Serialize for Family {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Family {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Family::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Family;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for f in Family::ALL {
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Family>(&json).unwrap(), f);
            assert_eq!(f.name().parse::<Family>().unwrap(), f);
        }
        let err = "transformer".parse::<Family>().unwrap_err().to_string();
        assert!(err.contains("unknown model 'transformer'"), "{err}");
        assert!(serde_json::from_str::<Family>("\"transformer\"").is_err());
    }
}
