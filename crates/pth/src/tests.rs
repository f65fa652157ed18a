//! The pickle machine on Python's own output (vectors from `pickle.dumps`, protocols 2 and 4).
//! Real `torch.save` files, in both formats, are tested end to end in `tests/` with python torch.

use crate::{Checkpoint, PthError, Value, pickle::unpickle};

/// `OrderedDict(a=1, neg=-300, big=2**40, f=1.5, s='é', t=(True, None, False), l=l, again=l,
/// n={'k': [1, 2]})` where `l` is one list, appended to (`[7]`) after the dict was built.
const PROTOCOL_2: &str = "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158030000006e656771034ad4feffff580300000062696771048a060000000000015801000000667105473ff800000000000058010000007371065802000000c3a971075801000000747108884e8987710958010000006c710a5d710b4b07615805000000616761696e710c680b58010000006e710d7d710e58010000006b710f5d7110284b014b026573752e";
const PROTOCOL_4: &str = "80049588000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b018c036e6567944ad4feffff8c03626967948a060000000000018c016694473ff80000000000008c0173948c02c3a9948c017494884e8987948c016c945d944b07618c05616761696e94680d8c016e947d948c016b945d94284b014b026573752e";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn expected() -> Value {
    let shared = Value::List(vec![Value::Int(7)]);
    Value::Dict(vec![
        (s("a"), Value::Int(1)),
        (s("neg"), Value::Int(-300)),
        (s("big"), Value::Int(1 << 40)),
        (s("f"), Value::Float(1.5)),
        (s("s"), s("é")),
        (s("t"), Value::Tuple(vec![Value::Bool(true), Value::None, Value::Bool(false)])),
        (s("l"), shared.clone()),
        (s("again"), shared),
        (s("n"), Value::Dict(vec![(s("k"), Value::List(vec![Value::Int(1), Value::Int(2)]))])),
    ])
}

#[test]
fn python_pickles_read_back_exactly() {
    for (protocol, text) in [(2, PROTOCOL_2), (4, PROTOCOL_4)] {
        let bytes = hex(text);
        let (unpickled, used) = unpickle(&bytes).unwrap();
        assert_eq!(used, bytes.len(), "protocol {protocol}: the whole pickle is consumed");
        assert_eq!(unpickled.value, expected(), "protocol {protocol}");
        assert_eq!(unpickled.value.get("f").and_then(Value::as_f64), Some(1.5));
    }
}

#[test]
fn broken_input_is_an_error_not_a_panic() {
    let bytes = hex(PROTOCOL_2);
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(unpickle(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let err = unpickle(&[0x80, 0x02, 0xff]).unwrap_err();
    assert!(err.to_string().contains("0xff"), "{err}");
    let err = Checkpoint::from_bytes(b"hello".to_vec()).unwrap_err();
    assert!(matches!(err, PthError::Format(_)), "{err}");
}
