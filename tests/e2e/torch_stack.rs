//! libtorch through tch on CPU: forward and backward against hand-derived gradients, and an
//! optimiser that actually learns.

use tch::{Kind, Tensor, nn, nn::Module, nn::OptimizerConfig};

const TOLERANCE: f64 = 1e-5;

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("tensor to vec")
}

/// loss = mean((tanh(x·W1 + b1)·w2 − t)²) over a batch, differentiated by hand in f64.
#[test]
fn mlp_gradients_match_hand_derivation() {
    let (n, d, h) = (4usize, 3usize, 5usize);
    let x: Vec<f64> = (0..n * d).map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0).collect();
    let w1: Vec<f64> = (0..d * h).map(|i| ((i * 5 % 13) as f64 - 6.0) / 10.0).collect();
    let b1: Vec<f64> = (0..h).map(|i| i as f64 / 10.0 - 0.2).collect();
    let w2: Vec<f64> = (0..h).map(|i| 0.3 - i as f64 / 10.0).collect();
    let t: Vec<f64> = (0..n).map(|i| i as f64 / 2.0 - 0.5).collect();

    let tensor = |v: &[f64], shape: &[i64]| Tensor::from_slice(v).reshape(shape).set_requires_grad(true);
    let (tw1, tb1, tw2) = (tensor(&w1, &[3, 5]), tensor(&b1, &[5]), tensor(&w2, &[5, 1]));
    let tx = Tensor::from_slice(&x).reshape([4, 3]);
    let tt = Tensor::from_slice(&t).reshape([4, 1]);
    let hidden = (tx.matmul(&tw1) + &tb1).tanh();
    let loss = (hidden.matmul(&tw2) - tt).square().mean(Kind::Double);
    loss.backward();

    // By hand: a = xW1 + b1, z = tanh a, y = z·w2, r = y − t, L = Σ r² / n.
    let (mut g_w1, mut g_b1, mut g_w2, mut expected_loss) = (vec![0.0; d * h], vec![0.0; h], vec![0.0; h], 0.0);
    for row in 0..n {
        let z: Vec<f64> =
            (0..h).map(|j| ((0..d).map(|k| x[row * d + k] * w1[k * h + j]).sum::<f64>() + b1[j]).tanh()).collect();
        let r = (0..h).map(|j| z[j] * w2[j]).sum::<f64>() - t[row];
        expected_loss += r * r / n as f64;
        let dy = 2.0 * r / n as f64;
        for j in 0..h {
            g_w2[j] += dy * z[j];
            let da = dy * w2[j] * (1.0 - z[j] * z[j]);
            g_b1[j] += da;
            for k in 0..d {
                g_w1[k * h + j] += da * x[row * d + k];
            }
        }
    }

    assert!((loss.double_value(&[]) - expected_loss).abs() < TOLERANCE);
    for (name, got, want) in
        [("W1", to_vec(&tw1.grad()), g_w1), ("b1", to_vec(&tb1.grad()), g_b1), ("w2", to_vec(&tw2.grad()), g_w2)]
    {
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < TOLERANCE, "grad {name}: {got:?} vs {want:?}");
        }
    }
}

/// Adam on a VarStore fits y = 2·x₀ − 3·x₁ + 1.
#[test]
fn adam_learns_a_linear_map() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let layer = nn::linear(vs.root() / "fit", 2, 1, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 0.05).expect("optimizer");
    let x = Tensor::rand([256, 2], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let y = x.select(1, 0) * 2.0 - x.select(1, 1) * 3.0 + 1.0;
    for _ in 0..500 {
        let loss = layer.forward(&x).squeeze_dim(1).mse_loss(&y, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let weights = to_vec(&layer.ws);
    let bias = to_vec(layer.bs.as_ref().expect("bias"));
    for (got, want) in weights.iter().chain(&bias).zip([2.0, -3.0, 1.0]) {
        assert!((got - want).abs() < 1e-2, "weights {weights:?} bias {bias:?}");
    }
}
