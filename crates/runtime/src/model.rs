//! [`OrtModel`]: any bundle's architecture behind one decode call (what `translate --bundle` and
//! the server use).

use xlmc_bundle::{Architecture, Bundle};
use xlmc_decoding::{DecodeError, DecodeOptions, Hypothesis, decode};

use crate::{OrtBiGru, OrtTransformer, RuntimeError, SessionOptions};

#[derive(Debug)]
pub enum OrtModel {
    Transformer(Box<OrtTransformer>),
    BiGru(Box<OrtBiGru>),
}

impl OrtModel {
    /// Loads the sessions of a verified bundle, by its manifest's architecture.
    pub fn load(bundle: &Bundle, options: &SessionOptions) -> Result<Self, RuntimeError> {
        Ok(match bundle.manifest.architecture {
            Architecture::Transformer => OrtModel::Transformer(Box::new(OrtTransformer::load(bundle, options)?)),
            Architecture::BiGru => OrtModel::BiGru(Box::new(OrtBiGru::load(bundle, options)?)),
        })
    }

    /// Batched decoding through the shared core.
    pub fn decode(
        &mut self,
        sources: &[Vec<u32>],
        (source, target): (i64, i64),
        options: DecodeOptions,
    ) -> Result<Vec<Hypothesis>, DecodeError<RuntimeError>> {
        match self {
            OrtModel::Transformer(m) => decode(&mut m.translator(source, target), sources, options),
            OrtModel::BiGru(m) => decode(&mut m.translator(source, target), sources, options),
        }
    }
}
