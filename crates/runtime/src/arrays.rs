//! ndarray ⇄ ORT plumbing shared by the step models.

use std::borrow::Cow;

use ndarray::{Array, Array2, ArrayBase, ArrayD, Axis, Data, Dimension, Slice};
use ort::{
    session::{SessionInputValue, SessionOutputs},
    value::{PrimitiveTensorElementType, TensorRef},
};

use crate::RuntimeError;

pub(crate) fn view<'a, T, S, D>(array: &'a ArrayBase<S, D>) -> Result<SessionInputValue<'a>, RuntimeError>
where
    T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
    S: Data<Elem = T>,
    D: Dimension + 'static,
{
    // Shape + slice rather than the array itself: ORT's layout check refuses zero-sized arrays
    // (an empty KV cache at the first step), whose strides ndarray leaves at zero.
    let data = array.as_slice().ok_or_else(|| RuntimeError::Bundle("internal: a non-contiguous input".into()))?;
    Ok(TensorRef::from_array_view((array.shape().to_vec(), data))?.into())
}

pub(crate) fn output<T: PrimitiveTensorElementType + Clone + 'static, D: Dimension>(
    outputs: &SessionOutputs<'_>,
    name: &str,
) -> Result<Array<T, D>, RuntimeError> {
    let value = outputs.get(name).ok_or_else(|| RuntimeError::Bundle(format!("graph has no output `{name}`")))?;
    let array: ArrayD<T> = value.try_extract_array::<T>()?.to_owned();
    array.into_dimensionality::<D>().map_err(|e| RuntimeError::Bundle(format!("output `{name}`: {e}")))
}

/// `mask` [rows, columns] widened to `width` columns with `false` (borrowed when it is that wide).
pub(crate) fn pad_columns(mask: &Array2<bool>, width: usize) -> Cow<'_, Array2<bool>> {
    if mask.ncols() == width {
        return Cow::Borrowed(mask);
    }
    let mut padded = Array2::from_elem((mask.nrows(), width), false);
    padded.slice_axis_mut(Axis(1), Slice::from(0..mask.ncols())).assign(mask);
    Cow::Owned(padded)
}
