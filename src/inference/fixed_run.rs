//! Inference without a heap allocation per frame, for models whose output shape is fixed.
//!
//! ort's safe `run` makes, on every call, C strings of the input and output names, a boxed
//! shape for the input tensor and reference-counted handles around the output. A camera
//! pipeline runs the model 30 times a second for hours, so the session keeps instead: the
//! names as C strings, ONNX Runtime's CPU memory description, and the output tensor over a
//! buffer of its own that ONNX Runtime writes into. Per frame only the input's `OrtValue`
//! is made (by ONNX Runtime, over the frame's tensor bytes, without a copy) and released.
//!
//! This talks to ONNX Runtime's C API directly ([`ort::api`]), which is why it is `unsafe`;
//! every pointer it keeps is created and released here.

use std::ffi::{CStr, CString, c_void};
use std::ptr::{self, NonNull};

use ort::AsPointer;
use ort::session::{RunOptions, Session};
use ort::sys::{
    ONNXTensorElementDataType, OrtAllocatorType, OrtMemType, OrtMemoryInfo, OrtStatusPtr, OrtValue,
};
use ort::value::{TensorElementType, ValueType};

use super::contract::{ModelBatch, ModelContract};
use crate::error::{Error, Result};
use crate::tensor::{DType, TensorSpec};

/// The output buffer ONNX Runtime writes into, in the model's output element type.
enum OutputBuffer {
    F32(Box<[f32]>),
    U8(Box<[u8]>),
    U16(Box<[u16]>),
}

impl OutputBuffer {
    fn new(ty: TensorElementType, len: usize) -> Option<Self> {
        match ty {
            TensorElementType::Float32 => Some(OutputBuffer::F32(vec![0.0; len].into())),
            TensorElementType::Uint8 => Some(OutputBuffer::U8(vec![0; len].into())),
            TensorElementType::Uint16 => Some(OutputBuffer::U16(vec![0; len].into())),
            _ => None,
        }
    }

    /// Base pointer, byte length and ONNX element type.
    fn raw(&mut self) -> (*mut c_void, usize, ONNXTensorElementDataType) {
        match self {
            OutputBuffer::F32(b) => (
                b.as_mut_ptr().cast(),
                b.len() * 4,
                ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            ),
            OutputBuffer::U8(b) => (
                b.as_mut_ptr().cast(),
                b.len(),
                ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
            ),
            OutputBuffer::U16(b) => (
                b.as_mut_ptr().cast(),
                b.len() * 2,
                ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
            ),
        }
    }
}

/// A prepared run for a model with a fixed input and output shape.
pub(super) struct FixedRun {
    input_name: CString,
    output_name: CString,
    memory: NonNull<OrtMemoryInfo>,
    /// Output tensor over `buffer`; released before `buffer` is freed (see `Drop`).
    output: NonNull<OrtValue>,
    buffer: OutputBuffer,
    output_dims: [i64; 4],
    /// Dequantized scores of a quantized output, kept from run to run.
    dequantized: Vec<f32>,
}

// SAFETY: the memory info and the output value are owned by this struct alone and used
// only through `&mut self`; ONNX Runtime values are not tied to the thread that made them.
unsafe impl Send for FixedRun {}

impl FixedRun {
    /// The prepared run, or None when the model's shapes are not fixed (a dynamic input or
    /// output dimension), in which case the session keeps using ort's `run`.
    pub(super) fn prepare(session: &Session, contract: &ModelContract) -> Result<Option<Self>> {
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == contract.output_name)
            .ok_or_else(|| Error::Inference("the model's scores output is gone".into()))?;
        let ValueType::Tensor { ty, shape, .. } = output.dtype() else {
            return Ok(None);
        };
        let output_dims = match **shape {
            [n, a, b, c] => [n, a, b, c],
            [a, b, c] => [1, a, b, c],
            _ => return Ok(None),
        };
        // A fixed batch above 1 runs padded, through the batched run.
        let batched = matches!(contract.batch, ModelBatch::Fixed(2..));
        if batched || contract.input.is_dynamic() || output_dims.iter().any(|d| *d <= 0) {
            return Ok(None);
        }
        let len = output_dims.iter().product::<i64>() as usize;
        let Some(mut buffer) = OutputBuffer::new(*ty, len) else {
            return Ok(None);
        };
        let memory = cpu_memory_info()?;
        let shape: &[i64] = shape;
        let (data, bytes, onnx_ty) = buffer.raw();
        // SAFETY: `data` points at `bytes` bytes owned by `buffer`, which lives as long as
        // the value (Drop releases the value first); `shape` outlives the call.
        let created = unsafe { create_tensor(memory, data, bytes, shape, onnx_ty) };
        let output = match created {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: made above, not shared.
                unsafe { (ort::api().ReleaseMemoryInfo)(memory.as_ptr()) };
                return Err(e);
            }
        };
        Ok(Some(FixedRun {
            input_name: c_name(&contract.input_name)?,
            output_name: c_name(&contract.output_name)?,
            memory,
            output,
            buffer,
            output_dims,
            dequantized: Vec::with_capacity(len),
        }))
    }

    /// The output shape as 1×…: the same for every run.
    pub(super) fn output_dims(&self) -> [i64; 4] {
        self.output_dims
    }

    /// Runs the model on `input` (laid out as `spec`, already checked against the
    /// contract) and returns the scores as f32.
    pub(super) fn run(
        &mut self,
        session: &mut Session,
        options: &RunOptions,
        spec: &TensorSpec,
        input: &[u8],
        contract: &ModelContract,
    ) -> Result<&[f32]> {
        let shape = spec.shape();
        let ty = match spec.dtype {
            DType::F32 => ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            DType::U8 => ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
            DType::U16 => ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
        };
        // ONNX Runtime never writes into an input tensor: the cast to *mut is its API's.
        let data = input.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: `input` and `shape` outlive the value, which is released below.
        let value = unsafe { create_tensor(self.memory, data, input.len(), &shape, ty)? };
        let names_in = [self.input_name.as_ptr()];
        let names_out = [self.output_name.as_ptr()];
        let inputs = [value.as_ptr().cast_const()];
        let mut outputs = [self.output.as_ptr()];
        // SAFETY: one input and one output, each name/value array of length 1; the output
        // is our preallocated tensor of the model's fixed output shape, which ONNX Runtime
        // fills in place; the session is borrowed mutably (its Run is not thread-safe).
        let status = unsafe {
            (ort::api().Run)(
                session.ptr_mut(),
                options.ptr(),
                names_in.as_ptr(),
                inputs.as_ptr(),
                1,
                names_out.as_ptr(),
                1,
                outputs.as_mut_ptr(),
            )
        };
        // SAFETY: made above and not used after this.
        unsafe { (ort::api().ReleaseValue)(value.as_ptr()) };
        check(status)?;
        Ok(self.scores(contract))
    }

    /// The output as f32: the buffer itself, or its dequantized copy.
    fn scores(&mut self, contract: &ModelContract) -> &[f32] {
        let q = contract.output_quantization;
        let (scale, zp) = q.map_or((1.0, 0.0), |q| (q.scale, q.zero_point as f32));
        self.dequantized.clear();
        match &self.buffer {
            OutputBuffer::F32(b) => return b,
            OutputBuffer::U8(b) => self
                .dequantized
                .extend(b.iter().map(|v| (*v as f32 - zp) * scale)),
            OutputBuffer::U16(b) => self
                .dequantized
                .extend(b.iter().map(|v| (*v as f32 - zp) * scale)),
        }
        &self.dequantized
    }
}

impl Drop for FixedRun {
    fn drop(&mut self) {
        // SAFETY: both were created in `prepare` and are released once, the output value
        // before the buffer it points into (fields drop after this).
        unsafe {
            (ort::api().ReleaseValue)(self.output.as_ptr());
            (ort::api().ReleaseMemoryInfo)(self.memory.as_ptr());
        }
    }
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::Inference(format!("tensor name {name:?} has a NUL")))
}

fn cpu_memory_info() -> Result<NonNull<OrtMemoryInfo>> {
    let mut info = ptr::null_mut();
    // SAFETY: plain constructor call with an out-pointer.
    let status = unsafe {
        (ort::api().CreateCpuMemoryInfo)(
            OrtAllocatorType::OrtArenaAllocator,
            OrtMemType::OrtMemTypeDefault,
            &mut info,
        )
    };
    check(status)?;
    NonNull::new(info).ok_or_else(|| Error::Inference("no CPU memory info".into()))
}

/// A tensor value over `bytes` bytes at `data` (not copied).
///
/// # Safety
/// `data` must stay valid for `bytes` bytes until the returned value is released.
unsafe fn create_tensor(
    memory: NonNull<OrtMemoryInfo>,
    data: *mut c_void,
    bytes: usize,
    shape: &[i64],
    ty: ONNXTensorElementDataType,
) -> Result<NonNull<OrtValue>> {
    let mut value = ptr::null_mut();
    // SAFETY: the caller keeps `data` alive; `shape` is read during the call only.
    let status = unsafe {
        (ort::api().CreateTensorWithDataAsOrtValue)(
            memory.as_ptr(),
            data,
            bytes,
            shape.as_ptr(),
            shape.len(),
            ty,
            &mut value,
        )
    };
    check(status)?;
    NonNull::new(value).ok_or_else(|| Error::Inference("ONNX Runtime made no tensor".into()))
}

/// Turns an ONNX Runtime status into our error (and frees it).
fn check(status: OrtStatusPtr) -> Result<()> {
    let Some(status) = NonNull::new(status.0) else {
        return Ok(());
    };
    // SAFETY: a non-null status from the API: its message is a C string owned by it,
    // read before the status is released.
    let message = unsafe {
        let text = CStr::from_ptr((ort::api().GetErrorMessage)(status.as_ptr()));
        let message = text.to_string_lossy().into_owned();
        (ort::api().ReleaseStatus)(status.as_ptr());
        message
    };
    Err(Error::Inference(message))
}
