//! Running a session whose outputs go into memory the caller owns, one of which may also be an
//! input: the Transformer decoder reads its self-attention caches and writes the step into them
//! in place (GroupQueryAttention's shared past/present buffer). `ort`'s safe API cannot say that
//! an input and an output are one tensor (a preallocated output must be an owned value), so this
//! calls ONNX Runtime's `Run` directly with the values' pointers.

use std::ffi::{CString, c_char};

use ort::{
    AsPointer,
    session::Session,
    sys::OrtValue,
    value::{PrimitiveTensorElementType, TensorRefMut},
};

use crate::RuntimeError;

/// A tensor ONNX Runtime may write: made from an exclusive borrow of its memory.
pub(crate) trait Writable {
    fn value_ptr(&self) -> *mut OrtValue;
}

impl<T: PrimitiveTensorElementType + std::fmt::Debug> Writable for TensorRefMut<'_, T> {
    fn value_ptr(&self) -> *mut OrtValue {
        AsPointer::ptr(&**self).cast_mut()
    }
}

/// A graph input or output name, as `Run` takes it (made once per model, not per step).
#[derive(Debug)]
pub(crate) struct Name(CString);

impl Name {
    pub(crate) fn new(name: &str) -> Self {
        Self(CString::new(name).expect("graph names have no NUL"))
    }
}

/// Runs `session` on `inputs`, writing each output into the tensor given for it, which must
/// have that output's exact shape (ONNX Runtime allocates no output). An output tensor may also
/// be given as an input: the graph then reads it and writes it in place.
#[allow(unsafe_code)]
pub(crate) fn run_in_place(
    session: &mut Session,
    inputs: &[(&Name, &dyn AsPointer<Sys = OrtValue>)],
    outputs: &[(&Name, &dyn Writable)],
) -> Result<(), RuntimeError> {
    let input_names: Vec<*const c_char> = inputs.iter().map(|(name, _)| name.0.as_ptr()).collect();
    let input_values: Vec<*const OrtValue> = inputs.iter().map(|(_, value)| value.ptr()).collect();
    let output_names: Vec<*const c_char> = outputs.iter().map(|(name, _)| name.0.as_ptr()).collect();
    let mut output_values: Vec<*mut OrtValue> = outputs.iter().map(|(_, value)| value.value_ptr()).collect();
    // SAFETY: the session, names and values outlive the call; every output value was made from
    // memory borrowed exclusively by its `Writable` (ONNX Runtime writes only there), and `Run`
    // takes preallocated outputs as they are (non-null entries are neither replaced nor freed).
    // `&mut Session` keeps other runs of this session out meanwhile.
    let status = unsafe {
        (ort::api().Run)(
            session.ptr_mut(),
            std::ptr::null(),
            input_names.as_ptr(),
            input_values.as_ptr(),
            input_values.len(),
            output_names.as_ptr(),
            output_names.len(),
            output_values.as_mut_ptr(),
        )
    };
    // SAFETY: `status` was just returned by ONNX Runtime.
    unsafe { ort::Error::result_from_status(status) }?;
    Ok(())
}
