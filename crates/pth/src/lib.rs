//! Reads PyTorch `.pth` checkpoints without Python or libtorch (libtorch cannot read Python
//! pickles): both `torch.save` formats —
//! - **zip** (torch ≥ 1.6): `<archive>/data.pkl` + one `<archive>/data/<key>` file per storage;
//! - **legacy** (`_use_new_zipfile_serialization=False`, and every checkpoint older than 1.6):
//!   five pickles in a row (magic number, protocol, system info, the object, storage keys) and
//!   then each storage as an 8-byte element count and its bytes.
//!
//! [`Checkpoint::value`] is the pickled object as a [`Value`] tree; tensors in it are
//! [`TensorRef`]s, read with [`Checkpoint::tensor_f32`].

mod pickle;
mod value;

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

pub use value::{DType, TensorRef, Value};

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a PyTorch checkpoint: {0}")]
    Format(String),
    #[error("pickle: {0}")]
    Pickle(String),
    #[error("storage {key}: {detail}")]
    Storage { key: String, detail: String },
}

/// The two layouts `torch.save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Legacy,
}

/// A loaded checkpoint: the pickled object and the raw bytes of every storage it uses.
#[derive(Debug)]
pub struct Checkpoint {
    pub value: Value,
    pub format: Format,
    storages: HashMap<String, Vec<u8>>,
}

/// `0x1950a86a20f9469cfc6c`, the legacy format's first pickle, as LONG1 little-endian bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Self, PthError> {
        let bytes = std::fs::read(path).map_err(|source| PthError::Io { path: path.to_owned(), source })?;
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        if bytes.starts_with(b"PK\x03\x04") {
            Self::from_zip(bytes)
        } else if bytes.first() == Some(&0x80) {
            Self::from_legacy(&bytes)
        } else {
            Err(PthError::Format("neither a zip archive nor a legacy pickle stream".into()))
        }
    }

    fn from_zip(bytes: Vec<u8>) -> Result<Self, PthError> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| PthError::Format(format!("zip archive: {e}")))?;
        let pickle_name = archive
            .file_names()
            .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
            .map(str::to_owned)
            .ok_or_else(|| PthError::Format("zip archive without data.pkl".into()))?;
        let prefix = pickle_name.strip_suffix("data.pkl").expect("matched above").to_owned();
        let mut read_entry = |name: &str| -> Result<Vec<u8>, PthError> {
            let mut entry = archive.by_name(name).map_err(|e| PthError::Format(format!("zip entry {name}: {e}")))?;
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data).map_err(|e| PthError::Format(format!("zip entry {name}: {e}")))?;
            Ok(data)
        };
        if let Ok(order) = read_entry(&format!("{prefix}byteorder"))
            && order.trim_ascii() != b"little"
        {
            return Err(PthError::Format(format!("byte order {:?} (only little-endian is read)", order)));
        }
        let pickle_bytes = read_entry(&pickle_name)?;
        let (unpickled, _) = pickle::unpickle(&pickle_bytes)?;
        let mut storages = HashMap::new();
        for storage in &unpickled.storages {
            let data = read_entry(&format!("{prefix}data/{}", storage.key))?;
            storages.insert(storage.key.clone(), data);
        }
        Ok(Self { value: unpickled.value, format: Format::Zip, storages })
    }

    fn from_legacy(bytes: &[u8]) -> Result<Self, PthError> {
        let mut pos = 0;
        let mut next = |what: &str| -> Result<pickle::Unpickled, PthError> {
            let (unpickled, used) =
                pickle::unpickle(&bytes[pos..]).map_err(|e| PthError::Format(format!("legacy format, {what}: {e}")))?;
            pos += used;
            Ok(unpickled)
        };
        let magic = next("magic number")?;
        if magic.value != Value::Bytes(LEGACY_MAGIC.to_vec()) {
            return Err(PthError::Format("pickle stream without torch's magic number".into()));
        }
        let protocol = next("protocol version")?;
        if protocol.value.as_i64() != Some(LEGACY_PROTOCOL) {
            return Err(PthError::Format(format!("legacy protocol {} (expected 1001)", protocol.value)));
        }
        let sys_info = next("system info")?;
        if sys_info.value.get("little_endian").and_then(Value::as_bool) == Some(false) {
            return Err(PthError::Format("written on a big-endian machine".into()));
        }
        let object = next("object")?;
        let keys = next("storage keys")?;
        let Value::List(keys) = keys.value else {
            return Err(PthError::Format(format!("storage keys are a {}", keys.value)));
        };
        let dtypes: HashMap<&str, DType> = object.storages.iter().map(|s| (s.key.as_str(), s.dtype)).collect();
        let mut storages = HashMap::new();
        for key in keys {
            let key = key.as_str().map(str::to_owned).unwrap_or_else(|| key.as_i64().unwrap_or(-1).to_string());
            let dtype = dtypes.get(key.as_str()).copied().unwrap_or(DType::U8);
            let storage_error = |detail: &str| PthError::Storage { key: key.clone(), detail: detail.to_owned() };
            let header = bytes.get(pos..pos + 8).ok_or_else(|| storage_error("truncated before its size"))?;
            let numel = u64::from_le_bytes(header.try_into().expect("8 bytes")) as usize;
            pos += 8;
            let len = numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| storage_error("size overflows"))?;
            let data = bytes.get(pos..pos + len).ok_or_else(|| storage_error("truncated data"))?;
            pos += len;
            storages.insert(key, data.to_vec());
        }
        Ok(Self { value: object.value, format: Format::Legacy, storages })
    }

    /// A tensor's elements in row-major order as f32 (any float or integer dtype), following
    /// its strides and offset into the storage.
    pub fn tensor_f32(&self, tensor: &TensorRef) -> Result<Vec<f32>, PthError> {
        let storage_error = |detail: String| PthError::Storage { key: tensor.storage_key.clone(), detail };
        let data = self.storages.get(&tensor.storage_key).ok_or_else(|| storage_error("missing".into()))?;
        let size = tensor.dtype.size_in_bytes();
        let available = data.len() / size;
        let numel = tensor.numel();
        if numel > 0 {
            let last = tensor.offset + tensor.shape.iter().zip(&tensor.stride).map(|(n, s)| (n - 1) * s).sum::<usize>();
            if last >= available {
                return Err(storage_error(format!(
                    "tensor {:?} at offset {} needs element {last}, the storage has {available}",
                    tensor.shape, tensor.offset
                )));
            }
        }
        let mut out = Vec::with_capacity(numel);
        let mut index = vec![0usize; tensor.shape.len()];
        for _ in 0..numel {
            let element = tensor.offset + index.iter().zip(&tensor.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(element_f32(&data[element * size..(element + 1) * size], tensor.dtype));
            // Advance the multi-index, last dimension fastest.
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < tensor.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(out)
    }
}

fn element_f32(b: &[u8], dtype: DType) -> f32 {
    match dtype {
        DType::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
        DType::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")),
        DType::F16 => half::f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
        DType::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
        DType::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32,
        DType::I16 => f32::from(i16::from_le_bytes(b.try_into().expect("2 bytes"))),
        DType::I8 => f32::from(b[0] as i8),
        DType::U8 => f32::from(b[0]),
        DType::Bool => f32::from(u8::from(b[0] != 0)),
    }
}

#[cfg(test)]
mod tests;
