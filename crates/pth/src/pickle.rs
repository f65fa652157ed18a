//! A pickle virtual machine for what `torch.save` writes (protocols 0–5, the opcodes torch and
//! Python's dicts, lists, tuples, numbers, strings and objects use). It never runs Python code:
//! known constructors (`OrderedDict`, torch's tensor rebuilders, `set`) are interpreted, every
//! other class becomes an inert [`Value::Object`].
//!
//! Mutable containers live in an arena and the stack holds references to them, so a container
//! filled after being memoised (pickle's usual order) is seen complete wherever it is referenced.

use std::collections::HashMap;

use crate::{
    PthError,
    value::{DType, TensorRef, Value},
};

/// What a persistent id (`BINPERSID`) stands for: a typed storage, or a view into one.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: DType,
    /// Elements into the storage `key` (legacy storage views).
    pub offset: usize,
}

#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Obj>),
    Global(String),
    Storage(StorageRef),
    Tensor(TensorRef),
    Ref(usize),
}

#[derive(Debug)]
enum Node {
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Object { class: String, args: Vec<Obj>, state: Option<Obj> },
}

/// The result of one pickle: its value and the storages its tensors refer to (in first-use order).
#[derive(Debug)]
pub struct Unpickled {
    pub value: Value,
    pub storages: Vec<StorageRef>,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u64, Obj>,
    arena: Vec<Node>,
    storages: Vec<StorageRef>,
}

/// Runs one pickle starting at `data[0]`; returns its value and how many bytes it used.
pub fn unpickle(data: &[u8]) -> Result<(Unpickled, usize), PthError> {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
        storages: Vec::new(),
    };
    let root = machine.run()?;
    let value = machine.resolve(&root, 0)?;
    Ok((Unpickled { value, storages: machine.storages }, machine.pos))
}

fn bad(detail: impl Into<String>) -> PthError {
    PthError::Pickle(detail.into())
}

fn dtype_from_global(name: &str) -> Option<DType> {
    let short = name.rsplit('.').next()?;
    DType::from_storage_class(short).or(match short {
        "float64" | "double" => Some(DType::F64),
        "float32" | "float" => Some(DType::F32),
        "float16" | "half" => Some(DType::F16),
        "bfloat16" => Some(DType::BF16),
        "int64" | "long" => Some(DType::I64),
        "int32" | "int" => Some(DType::I32),
        "int16" | "short" => Some(DType::I16),
        "int8" => Some(DType::I8),
        "uint8" | "UntypedStorage" => Some(DType::U8),
        "bool" => Some(DType::Bool),
        _ => None,
    })
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PthError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| bad("truncated pickle"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PthError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, PthError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> Result<String, PthError> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("unterminated text argument"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<Obj, PthError> {
        let bytes = self.take(n)?;
        Ok(Obj::Str(String::from_utf8(bytes.to_vec()).map_err(|_| bad("invalid UTF-8 in a string"))?))
    }

    fn pop(&mut self) -> Result<Obj, PthError> {
        self.stack.pop().ok_or_else(|| bad("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Obj, PthError> {
        self.stack.last_mut().ok_or_else(|| bad("stack underflow"))
    }

    /// Everything pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Obj>, PthError> {
        let mark = self.marks.pop().ok_or_else(|| bad("MARK missing"))?;
        if mark > self.stack.len() {
            return Err(bad("MARK beyond the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn alloc(&mut self, node: Node) -> Obj {
        self.arena.push(node);
        Obj::Ref(self.arena.len() - 1)
    }

    fn node_of(&mut self, obj: &Obj) -> Result<&mut Node, PthError> {
        match obj {
            Obj::Ref(i) => Ok(&mut self.arena[*i]),
            other => Err(bad(format!("expected a list, dict or object, found {other:?}"))),
        }
    }

    fn extend_list(&mut self, target: &Obj, items: Vec<Obj>) -> Result<(), PthError> {
        match self.node_of(target)? {
            Node::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(bad("APPEND to something that is not a list")),
        }
    }

    fn set_items(&mut self, target: &Obj, items: Vec<Obj>) -> Result<(), PthError> {
        if !items.len().is_multiple_of(2) {
            return Err(bad("SETITEMS with an odd number of items"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.node_of(target)? {
            Node::Dict(dict) => {
                for (k, v) in pairs {
                    // A repeated key replaces the earlier value, as in Python.
                    match dict.iter_mut().find(|(existing, _)| same_key(existing, &k)) {
                        Some(slot) => slot.1 = v,
                        None => dict.push((k, v)),
                    }
                }
                Ok(())
            }
            _ => Err(bad("SETITEM on something that is not a dict")),
        }
    }

    fn run(&mut self) -> Result<Obj, PthError> {
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    let _protocol = self.byte()?;
                }
                0x95 => {
                    let _frame_len = self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'N' => self.stack.push(Obj::None),
                0x88 => self.stack.push(Obj::Bool(true)),
                0x89 => self.stack.push(Obj::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Obj::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.byte()?;
                    self.stack.push(Obj::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Obj::Int(i64::from(v)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { usize::from(self.byte()?) } else { self.u32()? as usize };
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(long_from_le(bytes));
                }
                b'I' | b'L' => {
                    let text = self.line()?;
                    let text = text.trim_end_matches('L');
                    self.stack.push(match text {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        t => Obj::Int(t.parse().map_err(|_| bad(format!("integer {t:?}")))?),
                    });
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.stack.push(Obj::Float(v));
                }
                b'F' => {
                    let text = self.line()?;
                    self.stack.push(Obj::Float(text.trim().parse().map_err(|_| bad(format!("float {text:?}")))?));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(s);
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    let s = self.utf8(n)?;
                    self.stack.push(s);
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(s);
                }
                b'V' => {
                    let text = self.line()?;
                    self.stack.push(Obj::Str(text));
                }
                // Python 2 `str` (legacy checkpoints): bytes that are almost always ASCII text.
                b'T' | b'U' | b'S' => {
                    let bytes = match op {
                        b'T' => {
                            let n = self.u32()? as usize;
                            self.take(n)?.to_vec()
                        }
                        b'U' => {
                            let n = usize::from(self.byte()?);
                            self.take(n)?.to_vec()
                        }
                        _ => {
                            let text = self.line()?;
                            text.trim_matches(|c| c == '\'' || c == '"').as_bytes().to_vec()
                        }
                    };
                    self.stack.push(match String::from_utf8(bytes) {
                        Ok(s) => Obj::Str(s),
                        Err(e) => Obj::Bytes(e.into_bytes()),
                    });
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => usize::from(self.byte()?),
                        _ => self.u64()? as usize,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(Obj::Bytes(bytes));
                }
                b')' => self.stack.push(Obj::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(bad("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Obj::Tuple(items));
                }
                b']' => {
                    let list = self.alloc(Node::List(Vec::new()));
                    self.stack.push(list);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let list = self.alloc(Node::List(items));
                    self.stack.push(list);
                }
                b'}' | 0x8f => {
                    // Sets are read as lists: their order is arbitrary anyway.
                    let node = if op == b'}' { Node::Dict(Vec::new()) } else { Node::List(Vec::new()) };
                    let obj = self.alloc(node);
                    self.stack.push(obj);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.alloc(Node::Dict(Vec::new()));
                    self.set_items(&dict, items)?;
                    self.stack.push(dict);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let set = self.alloc(Node::List(items));
                    self.stack.push(set);
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?.clone();
                    self.extend_list(&target, vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.extend_list(&target, items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Obj::Global(format!("{module}.{name}")));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(module), Obj::Str(name)) = (module, name) else {
                        return Err(bad("STACK_GLOBAL needs two strings"));
                    };
                    self.stack.push(Obj::Global(format!("{module}.{name}")));
                }
                b'p' => {
                    let index = self.line()?.parse().map_err(|_| bad("PUT index"))?;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                b'q' | b'r' => {
                    let index = if op == b'q' { u64::from(self.byte()?) } else { u64::from(self.u32()?) };
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                b'g' | b'h' | b'j' => {
                    let index = match op {
                        b'g' => self.line()?.parse().map_err(|_| bad("GET index"))?,
                        b'h' => u64::from(self.byte()?),
                        _ => u64::from(self.u32()?),
                    };
                    let value = self.memo.get(&index).cloned().ok_or_else(|| bad(format!("memo {index} unset")))?;
                    self.stack.push(value);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.stack.push(storage);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.stack.push(result);
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // keyword arguments: not needed by any class we interpret
                    }
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let result = self.reduce(class, args)?;
                    self.stack.push(result);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    if let Obj::Ref(i) = target
                        && let Node::Object { state: slot, .. } = &mut self.arena[i]
                    {
                        *slot = Some(state);
                    }
                    // BUILD on dicts (an OrderedDict's `_metadata`) or tensors carries nothing we use.
                }
                other => return Err(bad(format!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1))),
            }
        }
    }

    /// torch's persistent ids: `('storage', storage_type, key, location, numel[, view])`.
    fn persistent_load(&mut self, pid: Obj) -> Result<Obj, PthError> {
        let Obj::Tuple(items) = pid else { return Err(bad(format!("persistent id {pid:?} is not a tuple"))) };
        let text = |o: &Obj| match o {
            Obj::Str(s) => Some(s.clone()),
            Obj::Int(i) => Some(i.to_string()),
            _ => None,
        };
        match items.as_slice() {
            [Obj::Str(kind), Obj::Global(class), key, _location, _numel, rest @ ..] if kind == "storage" => {
                let dtype = dtype_from_global(class).ok_or_else(|| bad(format!("unknown storage type {class}")))?;
                let key = text(key).ok_or_else(|| bad("storage key"))?;
                // Legacy views: (view_key, offset, view_size) into the root storage `key`.
                let offset = match rest.first() {
                    Some(Obj::Tuple(view)) => match view.get(1) {
                        Some(Obj::Int(offset)) => *offset as usize,
                        _ => return Err(bad("storage view without an offset")),
                    },
                    _ => 0,
                };
                let storage = StorageRef { key, dtype, offset };
                if !self.storages.iter().any(|s| s.key == storage.key) {
                    self.storages.push(storage.clone());
                }
                Ok(Obj::Storage(storage))
            }
            _ => Err(bad(format!("unsupported persistent id {items:?}"))),
        }
    }

    fn reduce(&mut self, callable: Obj, args: Obj) -> Result<Obj, PthError> {
        let args = match args {
            Obj::Tuple(items) => items,
            other => return Err(bad(format!("arguments {other:?} are not a tuple"))),
        };
        let Obj::Global(name) = callable else {
            return Err(bad(format!("call of {callable:?}, which is not a class or function")));
        };
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" | "__builtin__.dict" => {
                let dict = self.alloc(Node::Dict(Vec::new()));
                if let Some(Obj::Ref(items)) = args.first()
                    && let Node::List(pairs) = &self.arena[*items]
                {
                    let flat: Vec<Obj> = pairs
                        .iter()
                        .flat_map(|p| match p {
                            Obj::Tuple(kv) if kv.len() == 2 => kv.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    self.set_items(&dict, flat)?;
                }
                Ok(dict)
            }
            "builtins.set" | "__builtin__.set" | "builtins.frozenset" | "__builtin__.frozenset" => {
                let items = match args.first() {
                    Some(Obj::Ref(i)) => match &self.arena[*i] {
                        Node::List(items) => items.clone(),
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                Ok(self.alloc(Node::List(items)))
            }
            "_codecs.encode" => match args.first() {
                Some(Obj::Str(s)) => Ok(Obj::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
                _ => Err(bad("_codecs.encode without a string")),
            },
            "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor_v3" => {
                rebuild_tensor(&name, &args)
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
                Some(tensor @ Obj::Tensor(_)) => Ok(tensor.clone()),
                _ => Err(bad(format!("{name} without a tensor"))),
            },
            _ => Ok(self.alloc(Node::Object { class: name, args, state: None })),
        }
    }

    fn resolve(&self, obj: &Obj, depth: usize) -> Result<Value, PthError> {
        if depth > 512 {
            return Err(bad("nesting deeper than 512 (a reference cycle?)"));
        }
        let all = |items: &[Obj]| items.iter().map(|o| self.resolve(o, depth + 1)).collect::<Result<Vec<_>, _>>();
        Ok(match obj {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            // Integers wider than 64 bits (only torch's legacy magic number) as their LE bytes.
            Obj::BigInt(bytes) => Value::Bytes(bytes.clone()),
            Obj::Float(f) => Value::Float(*f),
            Obj::Str(s) => Value::Str(s.clone()),
            Obj::Bytes(b) => Value::Bytes(b.clone()),
            Obj::Tuple(items) => Value::Tuple(all(items)?),
            Obj::Global(name) => Value::Object { class: name.clone(), args: Vec::new(), state: None },
            Obj::Storage(s) => Value::Object { class: format!("storage {}", s.key), args: Vec::new(), state: None },
            Obj::Tensor(t) => Value::Tensor(t.clone()),
            Obj::Ref(i) => match &self.arena[*i] {
                Node::List(items) => Value::List(all(items)?),
                Node::Dict(pairs) => Value::Dict(
                    pairs
                        .iter()
                        .map(|(k, v)| Ok((self.resolve(k, depth + 1)?, self.resolve(v, depth + 1)?)))
                        .collect::<Result<_, PthError>>()?,
                ),
                Node::Object { class, args, state } => Value::Object {
                    class: class.clone(),
                    args: all(args)?,
                    state: state.as_ref().map(|s| self.resolve(s, depth + 1)).transpose()?.map(Box::new),
                },
            },
        })
    }
}

fn same_key(a: &Obj, b: &Obj) -> bool {
    match (a, b) {
        (Obj::Str(x), Obj::Str(y)) => x == y,
        (Obj::Int(x), Obj::Int(y)) => x == y,
        (Obj::Bool(x), Obj::Bool(y)) => x == y,
        _ => false,
    }
}

/// LONG1/LONG4: little-endian two's complement; wider than 64 bits stays as bytes.
fn long_from_le(bytes: Vec<u8>) -> Obj {
    if bytes.is_empty() {
        return Obj::Int(0);
    }
    if bytes.len() > 8 {
        return Obj::BigInt(bytes);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(&bytes);
    Obj::Int(i64::from_le_bytes(buf))
}

fn usizes(obj: &Obj, what: &str) -> Result<Vec<usize>, PthError> {
    match obj {
        Obj::Tuple(items) => items
            .iter()
            .map(|i| match i {
                Obj::Int(v) if *v >= 0 => Ok(*v as usize),
                _ => Err(bad(format!("tensor {what} holds {i:?}"))),
            })
            .collect(),
        other => Err(bad(format!("tensor {what} is {other:?}, not a tuple"))),
    }
}

/// `_rebuild_tensor[_v2|_v3](storage, storage_offset, size, stride, …[, dtype, …])`.
fn rebuild_tensor(name: &str, args: &[Obj]) -> Result<Obj, PthError> {
    let [Obj::Storage(storage), Obj::Int(offset), size, stride, rest @ ..] = args else {
        return Err(bad(format!("{name} with unexpected arguments {args:?}")));
    };
    let mut dtype = storage.dtype;
    // v3 stores an untyped (byte) storage and names the dtype separately.
    if name.ends_with("_v3")
        && let Some(Obj::Global(d)) = rest.get(2)
    {
        dtype = dtype_from_global(d).ok_or_else(|| bad(format!("unknown dtype {d}")))?;
    }
    let shape = usizes(size, "size")?;
    let stride = usizes(stride, "stride")?;
    if shape.len() != stride.len() {
        return Err(bad(format!("{name}: size {shape:?} and stride {stride:?} differ in rank")));
    }
    Ok(Obj::Tensor(TensorRef {
        dtype,
        storage_key: storage.key.clone(),
        offset: storage.offset + *offset as usize,
        shape,
        stride,
    }))
}
