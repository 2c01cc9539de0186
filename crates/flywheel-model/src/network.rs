//! What the [`crate::Pipeline`] needs of a family's network: the [`Net`] trait, and
//! [`Network`], which holds any family's network and only forwards to it. The pipeline knows
//! no family; each family's file in [`crate::families`] implements [`Net`] for its network.

use std::any::Any;

use flywheel_nn::{Loss, Tensor};
use flywheel_text::{KerasTokenizer, PadSpec};

use crate::family::Family;
use crate::spec::ModelSpec;
use crate::task::{LabelSet, Task};
use crate::ModelError;

/// Per-thread buffers of one network's inference (made by [`Net::scratch`], read back by the
/// same network's [`Net::outputs`]).
pub type Scratch = Box<dyn Any + Send>;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float (weights).
    F32,
    /// 32-bit unsigned integer (bucket lists).
    U32,
}

/// A tensor as the model file stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Its name in the file.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// An `f32` tensor.
    pub fn f32(name: &str, shape: &[usize], data: &[f32]) -> Self {
        RawTensor {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A one-dimensional `u32` tensor.
    pub fn u32(name: &str, data: &[u32]) -> Self {
        RawTensor {
            name: name.to_string(),
            dtype: Dtype::U32,
            shape: vec![data.len()],
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The sizes a network reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetShape {
    /// Ids its input may hold (embedding or feature rows): the tokenizer must emit fewer.
    pub rows: usize,
    /// Outputs per text for the task.
    pub outputs: usize,
}

/// Type-erased parts of [`Net`], implemented for every network that is `Clone + PartialEq`.
pub trait NetObject {
    /// As `Any`, to reach the concrete network.
    fn as_any(&self) -> &dyn Any;
    /// As `Any`, mutable.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Net>;
    /// Equal to `other` (same type, same weights).
    fn same(&self, other: &dyn Net) -> bool;
}

impl<T: Net + Clone + PartialEq> NetObject for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn clone_box(&self) -> Box<dyn Net> {
        Box::new(self.clone())
    }
    fn same(&self, other: &dyn Net) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// A family's network at inference: from text to model input, and from model inputs to the
/// task's outputs.
pub trait Net: NetObject + std::fmt::Debug + Send + Sync + 'static {
    /// The family it belongs to.
    fn family(&self) -> Family;

    /// Its trainable weights, named as in the model file.
    fn tensors(&self) -> Vec<(String, &Tensor<f32>)>;

    /// Everything the model file stores for it, in file order: the weights, then any other
    /// tensors (IDF weights, bucket lists).
    fn raw_tensors(&self) -> Vec<RawTensor> {
        self.tensors()
            .into_iter()
            .map(|(n, t)| RawTensor::f32(&n, t.shape(), t.data()))
            .collect()
    }

    /// Its sizes for `labels`' task, after checking that its parts fit together and fit `spec`.
    fn shape(
        &self,
        spec: &ModelSpec,
        labels: &LabelSet,
        tokenizer: &KerasTokenizer,
    ) -> Result<NetShape, ModelError>;

    /// Whether it masks padding (Keras's `mask_zero`).
    fn masked(&self) -> bool {
        false
    }

    /// The output loss of a network trained by gradient steps on logits.
    fn loss(&self) -> Option<Loss> {
        None
    }

    /// Recomputes what is derived from the weights and the padding rule (after a change).
    fn refresh(&mut self, _pad: &PadSpec) -> Result<(), ModelError> {
        Ok(())
    }

    /// True when a text's input is a truncated id sequence, false when it is every token's
    /// features.
    fn truncates(&self) -> bool {
        false
    }

    /// True when explanations must delete characters from the text as written (the network
    /// reads case and punctuation) rather than tokens from a token list.
    fn reads_raw_text(&self) -> bool {
        false
    }

    /// Appends the model input of `text`.
    fn encode_into(
        &self,
        tokenizer: &KerasTokenizer,
        pad: &PadSpec,
        text: &str,
        out: &mut Vec<u32>,
    );

    /// Appends the model input of already-cut tokens.
    fn encode_tokens_into(
        &self,
        tokenizer: &KerasTokenizer,
        pad: &PadSpec,
        tokens: &[&str],
        out: &mut Vec<u32>,
    );

    /// Fresh per-thread buffers for [`Net::outputs`].
    fn scratch(&self) -> Scratch;

    /// The task's outputs (probabilities or values, `[inputs.len(), labels.outputs()]`) of
    /// model inputs.
    fn outputs(
        &self,
        inputs: &[&[u32]],
        labels: &LabelSet,
        pad: &PadSpec,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), ModelError>;
}

/// The network of a pipeline: any family's [`Net`], to which it forwards.
pub struct Network(Box<dyn Net>);

impl Network {
    /// Wraps a family's network.
    pub fn new(net: impl Net) -> Self {
        Network(Box::new(net))
    }

    /// The family's network.
    pub fn get(&self) -> &dyn Net {
        self.0.as_ref()
    }

    /// The family's network, mutable.
    pub fn get_mut(&mut self) -> &mut dyn Net {
        self.0.as_mut()
    }

    /// The concrete network, if it is a `T`.
    pub fn downcast_ref<T: Net>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }

    /// The concrete network, mutable, if it is a `T`.
    pub fn downcast_mut<T: Net>(&mut self) -> Option<&mut T> {
        self.0.as_any_mut().downcast_mut::<T>()
    }

    /// The family it belongs to.
    pub fn family(&self) -> Family {
        self.0.family()
    }

    /// Its weights, named as in the model file.
    pub fn tensors(&self) -> Vec<(String, &Tensor<f32>)> {
        self.0.tensors()
    }

    /// The output loss of a network trained on logits.
    pub fn loss(&self) -> Option<Loss> {
        self.0.loss()
    }

    /// Number of trainable numbers.
    pub fn num_parameters(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.len()).sum()
    }
}

impl<T: Net> From<T> for Network {
    fn from(net: T) -> Self {
        Network::new(net)
    }
}

impl Clone for Network {
    fn clone(&self) -> Self {
        Network(self.0.clone_box())
    }
}

impl PartialEq for Network {
    fn eq(&self, other: &Self) -> bool {
        self.0.same(other.0.as_ref())
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Outputs per text for `task` from a model with `model_outputs` outputs: a binary model with
/// a softmax (or tree) over both classes reports one probability, the second class's.
pub fn task_width(task: Task, model_outputs: usize) -> usize {
    if task == Task::Binary && model_outputs == 2 {
        1
    } else {
        model_outputs
    }
}

/// Writes the task's outputs (`[task_width]`) from a model's probabilities (see
/// [`task_width`]).
pub fn task_outputs(task: Task, probs: &[f32], out: &mut [f32]) {
    if task_width(task, probs.len()) == 1 && probs.len() == 2 {
        out[0] = probs[1];
    } else {
        out.copy_from_slice(probs);
    }
}

/// The buffers a network of type `T` made with [`Net::scratch`] (fresh ones if `scratch`
/// holds another type's).
pub fn scratch_of<T: Default + Send + 'static>(scratch: &mut Scratch) -> &mut T {
    if !scratch.is::<T>() {
        *scratch = Box::new(T::default());
    }
    match scratch.downcast_mut::<T>() {
        Some(s) => s,
        None => unreachable!("the scratch was just replaced by a T"),
    }
}
