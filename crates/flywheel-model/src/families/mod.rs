//! The model families, one file each, and the registry that finds a family's
//! [`ModelFamily`] by its [`Family`]. Adding a family: its file here (a network implementing
//! [`crate::network::Net`] and a type implementing [`ModelFamily`]), a variant and a name in
//! [`Family`], and one line in [`of`].

mod api;
pub mod encoder;
pub mod fasttext;
pub mod linear;
pub mod sequence;
mod sequence_fit;
pub mod sequence_net;
pub mod setfit;
pub mod zeroshot;

pub use api::{cost, ModelFamily, ReadContext, Setting, TensorFile, TrainInput, Workload};

use crate::family::Family;
use crate::spec::ModelSpec;
use crate::ModelError;

/// The family's behaviour.
pub fn of(family: Family) -> &'static dyn ModelFamily {
    match family {
        Family::Lstm => &sequence::LSTM,
        Family::Gru => &sequence::GRU,
        Family::BiLstm => &sequence::BILSTM,
        Family::Cnn => &sequence::CNN,
        Family::FastText => &fasttext::FastText,
        Family::Linear => &linear::Linear,
        Family::Encoder => &encoder::Encoder,
        Family::SetFit => &setfit::SetFit,
        Family::ZeroShot => &zeroshot::ZeroShot,
    }
}

/// The families that read `setting`, as a phrase ("lstm, gru or bilstm").
pub fn accepting(setting: Setting) -> String {
    let names: Vec<&str> = Family::ALL
        .into_iter()
        .filter(|&f| of(f).accepts(setting))
        .map(Family::name)
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl ModelSpec {
    /// Checks that the settings can build a model (see [`validate`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        validate(self)
    }
}

/// Checks that the settings can build a model: the shared ones, that no setting of another
/// family is set, and the family's own.
pub fn validate(spec: &ModelSpec) -> Result<(), ModelError> {
    spec.validate_common()?;
    let family = of(spec.family);
    if spec.mask && !family.accepts(Setting::Mask) {
        return Err(ModelError::Setting(format!(
            "--mask applies to {}, not {}",
            accepting(Setting::Mask),
            spec.family
        )));
    }
    if spec.encoder.is_some() && !family.accepts(Setting::Encoder) {
        return Err(ModelError::Setting(format!(
            "--encoder applies to --model {}, not {}",
            accepting(Setting::Encoder),
            spec.family
        )));
    }
    if spec.fine_tune.is_some() && !family.accepts(Setting::FineTune) {
        return Err(ModelError::Setting(format!(
            "fine-tuning applies to --model {}, not {}",
            accepting(Setting::FineTune),
            spec.family
        )));
    }
    if spec.zero_shot.is_some() && !family.accepts(Setting::Prototypes) {
        return Err(ModelError::Setting(format!(
            "label prototypes apply to --model {}, not {}",
            accepting(Setting::Prototypes),
            spec.family
        )));
    }
    family.validate(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_under_its_own_name() {
        for f in Family::ALL {
            let imp = of(f);
            assert_eq!(imp.family(), f);
            let spec = imp.default_spec();
            assert_eq!(spec.family, f, "{f}");
            imp.default_config().validate().unwrap();
        }
        assert_eq!(accepting(Setting::Mask), "lstm, gru or bilstm");
        assert_eq!(accepting(Setting::Regression), "linear, encoder or setfit");
        assert_eq!(accepting(Setting::Convolution), "cnn");
    }
}
