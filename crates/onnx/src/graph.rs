//! [`GraphBuilder`]: named inputs with symbolic dims, initializers and nodes, checked as added.

use std::collections::HashSet;

use crate::{
    OnnxError,
    proto::{
        AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
        attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::Dimension,
        tensor_shape_proto::dimension, type_proto,
    },
};

/// Element types xlmc's graphs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F16,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

impl ElemType {
    /// The `TensorProto.DataType` number, as `Cast`'s `to` attribute wants it.
    pub fn onnx_code(self) -> i64 {
        self.data_type() as i64
    }

    fn data_type(self) -> DataType {
        match self {
            ElemType::F32 => DataType::Float,
            ElemType::F16 => DataType::Float16,
            ElemType::I64 => DataType::Int64,
            ElemType::I32 => DataType::Int32,
            ElemType::I8 => DataType::Int8,
            ElemType::U8 => DataType::Uint8,
            ElemType::Bool => DataType::Bool,
        }
    }
}

/// One axis of a graph input or output: a fixed size or a named, dynamic one (`"batch"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

impl Dim {
    pub fn fixed(size: i64) -> Self {
        Dim::Fixed(size)
    }

    pub fn symbolic(name: &str) -> Self {
        Dim::Symbolic(name.to_owned())
    }
}

/// Builds a [`GraphProto`] in topological order: a node may only read names defined before it.
#[derive(Debug)]
pub struct GraphBuilder {
    graph: GraphProto,
    defined: HashSet<String>,
    next_id: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self { graph: GraphProto { name: name.to_owned(), ..Default::default() }, defined: HashSet::new(), next_id: 0 }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: ElemType, dims: &[Dim]) -> Result<String, OnnxError> {
        self.define(name)?;
        self.graph.input.push(value_info(name, elem, dims));
        Ok(name.to_owned())
    }

    /// Declares a graph output: `value` (already defined) exposed as `name`.
    /// When the names differ an `Identity` node links them.
    pub fn output(&mut self, value: &str, name: &str, elem: ElemType, dims: &[Dim]) -> Result<(), OnnxError> {
        if !self.defined.contains(value) {
            return Err(OnnxError::UndefinedOutput(value.to_owned()));
        }
        if value != name {
            self.node("Identity", &[value], &[name], vec![])?;
        }
        self.declare_output(name, elem, dims)
    }

    /// Declares the already defined `name` as a graph output.
    pub fn declare_output(&mut self, name: &str, elem: ElemType, dims: &[Dim]) -> Result<(), OnnxError> {
        if !self.defined.contains(name) {
            return Err(OnnxError::UndefinedOutput(name.to_owned()));
        }
        self.graph.output.push(value_info(name, elem, dims));
        Ok(())
    }

    /// Adds a float32 constant (weights), stored little-endian in `raw_data`.
    pub fn initializer_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Result<String, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data.len(), DataType::Float, raw)
    }

    /// Adds a float16 constant (fp16 graphs), rounded to nearest even.
    pub fn initializer_f16(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Result<String, OnnxError> {
        let raw = data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        self.initializer(name, dims, data.len(), DataType::Float16, raw)
    }

    /// Adds an int64 constant (shapes, axes, indices).
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> Result<String, OnnxError> {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data.len(), DataType::Int64, raw)
    }

    /// Adds an int8 constant (quantized weights, zero points).
    pub fn initializer_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) -> Result<String, OnnxError> {
        let raw = data.iter().map(|&v| v as u8).collect();
        self.initializer(name, dims, data.len(), DataType::Int8, raw)
    }

    fn initializer(
        &mut self,
        name: &str,
        dims: &[i64],
        len: usize,
        data_type: DataType,
        raw_data: Vec<u8>,
    ) -> Result<String, OnnxError> {
        let expected = dims.iter().product::<i64>().max(0) as usize;
        if expected != len {
            return Err(OnnxError::InitializerSize { name: name.to_owned(), dims: dims.to_vec(), expected, got: len });
        }
        self.define(name)?;
        self.graph.initializer.push(TensorProto {
            name: name.to_owned(),
            dims: dims.to_vec(),
            data_type: data_type as i32,
            raw_data,
            ..Default::default()
        });
        Ok(name.to_owned())
    }

    /// Adds a node with explicit output names. An empty input name means "optional input absent".
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> Result<(), OnnxError> {
        self.node_in("", op_type, inputs, outputs, attributes)
    }

    /// [`GraphBuilder::node`] for an operator of another domain than ONNX's own (ONNX Runtime's
    /// contrib operators are `com.microsoft`); [`crate::Model`] imports every domain its graph uses.
    pub fn node_in(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> Result<(), OnnxError> {
        let node_name = format!("{op_type}_{}", self.next_id);
        self.next_id += 1;
        for input in inputs.iter().filter(|i| !i.is_empty()) {
            if !self.defined.contains(*input) {
                return Err(OnnxError::UndefinedInput {
                    node: node_name,
                    input: (*input).to_owned(),
                    graph: self.graph.name.clone(),
                });
            }
        }
        for output in outputs {
            self.define(output)?;
        }
        self.graph.node.push(NodeProto {
            name: node_name,
            op_type: op_type.to_owned(),
            domain: domain.to_owned(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            attribute: attributes,
            ..Default::default()
        });
        Ok(())
    }

    /// Adds a single-output node and returns the generated name of its output.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> Result<String, OnnxError> {
        let output = format!("{}_{}_out", op_type.to_lowercase(), self.next_id);
        self.node(op_type, inputs, &[&output], attributes)?;
        Ok(output)
    }

    pub fn finish(self) -> GraphProto {
        self.graph
    }

    fn define(&mut self, name: &str) -> Result<(), OnnxError> {
        if !self.defined.insert(name.to_owned()) {
            return Err(OnnxError::DuplicateName(name.to_owned(), self.graph.name.clone()));
        }
        Ok(())
    }
}

fn value_info(name: &str, elem: ElemType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(size) => dimension::Value::DimValue(*size),
                Dim::Symbolic(param) => dimension::Value::DimParam(param.clone()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem.data_type() as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Node attributes.
pub mod attr {
    use super::*;

    pub fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto { name: name.to_owned(), i: value, r#type: AttributeType::Int as i32, ..Default::default() }
    }

    pub fn float(name: &str, value: f32) -> AttributeProto {
        AttributeProto { name: name.to_owned(), f: value, r#type: AttributeType::Float as i32, ..Default::default() }
    }

    pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.to_owned(),
            ints: values.to_vec(),
            r#type: AttributeType::Ints as i32,
            ..Default::default()
        }
    }

    pub fn string(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            name: name.to_owned(),
            s: value.as_bytes().to_vec(),
            r#type: AttributeType::String as i32,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_an_undefined_name_is_refused_with_the_name() {
        let mut g = GraphBuilder::new("g");
        g.input("x", ElemType::F32, &[Dim::fixed(1)]).unwrap();
        let err = g.op("Add", &["x", "missing"], vec![]).unwrap_err();
        assert!(err.to_string().contains("`missing`"), "{err}");
    }

    #[test]
    fn a_name_defined_twice_is_refused() {
        let mut g = GraphBuilder::new("g");
        g.input("x", ElemType::F32, &[Dim::fixed(1)]).unwrap();
        assert!(matches!(g.initializer_f32("x", &[1], &[1.0]), Err(OnnxError::DuplicateName(..))));
    }

    #[test]
    fn initializer_data_must_fill_its_shape() {
        let mut g = GraphBuilder::new("g");
        let err = g.initializer_f32("w", &[2, 3], &[0.0; 5]).unwrap_err();
        assert!(matches!(err, OnnxError::InitializerSize { expected: 6, got: 5, .. }));
    }

    #[test]
    fn float_initializers_are_little_endian_raw_data() {
        let mut g = GraphBuilder::new("g");
        g.initializer_f32("w", &[2], &[1.0, -2.5]).unwrap();
        let graph = g.finish();
        let raw = &graph.initializer[0].raw_data;
        assert_eq!(raw.len(), 8);
        assert_eq!(f32::from_le_bytes(raw[4..8].try_into().unwrap()), -2.5);
        assert_eq!(graph.initializer[0].data_type, DataType::Float as i32);
    }

    #[test]
    fn output_under_a_new_name_goes_through_identity() {
        let mut g = GraphBuilder::new("g");
        g.input("x", ElemType::F32, &[Dim::symbolic("n")]).unwrap();
        let r = g.op("Relu", &["x"], vec![]).unwrap();
        g.output(&r, "y", ElemType::F32, &[Dim::symbolic("n")]).unwrap();
        let graph = g.finish();
        assert_eq!(graph.node.last().unwrap().op_type, "Identity");
        assert_eq!(graph.output[0].name, "y");
    }
}
