//! [`Model`]: a graph plus opset, producer and metadata, serialised and written atomically.

use std::path::Path;

use prost::Message;

use crate::{
    OnnxError,
    proto::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto},
};

/// ONNX IR version written: IR 8 is the one that opset 17 belongs to (ONNX 1.12+), and every
/// ONNX Runtime since 1.12 reads it.
pub const IR_VERSION: i64 = 8;
/// Default opset of the default ("ai.onnx") domain; 17 brings `LayerNormalization`.
pub const DEFAULT_OPSET: i64 = 17;
const PRODUCER_NAME: &str = "xlmc";

/// How many values the initializers (weights and constants) of the ONNX file at `path` hold.
pub fn stored_values(path: &Path) -> Result<u64, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: path.to_owned(), source })?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| OnnxError::Decode { path: path.to_owned(), message: e.to_string() })?;
    let graph = model.graph.unwrap_or_default();
    Ok(graph.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(1) as u64).sum())
}

/// An ONNX model about to be written.
#[derive(Debug)]
pub struct Model {
    proto: ModelProto,
}

impl Model {
    /// The graph with ONNX's default opset, and version 1 of every other domain its nodes use.
    pub fn new(graph: GraphProto) -> Self {
        let mut opset_import = vec![OperatorSetIdProto { domain: String::new(), version: DEFAULT_OPSET }];
        let domains: std::collections::BTreeSet<&str> =
            graph.node.iter().map(|n| n.domain.as_str()).filter(|d| !d.is_empty()).collect();
        opset_import
            .extend(domains.into_iter().map(|domain| OperatorSetIdProto { domain: domain.to_owned(), version: 1 }));
        Self {
            proto: ModelProto {
                ir_version: IR_VERSION,
                producer_name: PRODUCER_NAME.to_owned(),
                producer_version: env!("CARGO_PKG_VERSION").to_owned(),
                graph: Some(graph),
                opset_import,
                ..Default::default()
            },
        }
    }

    /// Uses another opset of the default domain.
    pub fn with_opset(mut self, version: i64) -> Self {
        self.proto.opset_import[0].version = version;
        self
    }

    /// Adds a `metadata_props` entry (readable from ORT's model metadata).
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.proto.metadata_props.push(StringStringEntryProto { key: key.to_owned(), value: value.to_owned() });
        self
    }

    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the model next to `path` under a temporary name, then renames it into place, so a
    /// reader never sees half a file.
    pub fn write(&self, path: &Path) -> Result<(), OnnxError> {
        xlmc_atomic_file::write(path, &self.to_bytes())
            .map_err(|source| OnnxError::Write { path: path.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, ElemType, GraphBuilder};

    #[test]
    fn written_model_decodes_to_the_same_proto() {
        let mut g = GraphBuilder::new("g");
        g.input("x", ElemType::F32, &[Dim::symbolic("n")]).unwrap();
        let y = g.op("Relu", &["x"], vec![]).unwrap();
        g.output(&y, "y", ElemType::F32, &[Dim::symbolic("n")]).unwrap();
        let model = Model::new(g.finish()).with_metadata("xlmc.kind", "test");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        model.write(&path).unwrap();
        let back = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
        assert_eq!(&back, model.proto());
        assert_eq!(back.opset_import[0].version, DEFAULT_OPSET);
        assert_eq!(back.opset_import.len(), 1, "no other domain used");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn every_domain_the_graph_uses_is_imported() {
        let mut g = GraphBuilder::new("g");
        g.input("x", ElemType::F32, &[Dim::symbolic("n")]).unwrap();
        g.node_in("com.microsoft", "Gelu", &["x"], &["y"], vec![]).unwrap();
        g.node_in("com.microsoft", "Gelu", &["y"], &["z"], vec![]).unwrap();
        let model = Model::new(g.finish());
        let imports: Vec<_> = model.proto().opset_import.iter().map(|o| (o.domain.as_str(), o.version)).collect();
        assert_eq!(imports, [("", DEFAULT_OPSET), ("com.microsoft", 1)]);
        assert_eq!(model.proto().graph.as_ref().unwrap().node[0].domain, "com.microsoft");
    }
}
