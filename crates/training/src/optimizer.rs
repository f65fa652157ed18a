//! Adam with XLM's inverse-square-root schedule, written out so its state (moments, step) can be
//! checkpointed and restored exactly.

use std::{collections::BTreeMap, path::Path};

use tch::{Kind, Tensor, nn::VarStore};

#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates taken.
    pub step: i64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// Linear warm-up to `base_lr` over `warmup` updates, then `base_lr · sqrt(warmup / update)`.
pub fn inverse_sqrt_lr(base_lr: f64, warmup: i64, update: i64) -> f64 {
    let update = (update + 1) as f64;
    let warmup = warmup.max(1) as f64;
    base_lr * (update / warmup).min((warmup / update).sqrt())
}

impl Adam {
    /// XLM's `adam_inverse_sqrt` betas: 0.9, 0.98; eps 1e-9.
    pub fn new(vs: &VarStore) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |t: &Tensor| Tensor::zeros_like(t).to_kind(Kind::Float);
        let m = params.iter().map(|(_, t)| zeros(t)).collect();
        let v = params.iter().map(|(_, t)| zeros(t)).collect();
        Self { params, m, v, step: 0, beta1: 0.9, beta2: 0.98, eps: 1e-9 }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm` (0 = off); returns the
    /// norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        // One device→host copy for the whole norm (one per tensor stalls a GPU ~200 times).
        let squares: Vec<Tensor> = grads.iter().map(|g| g.to_kind(Kind::Double).square().sum(Kind::Double)).collect();
        let norm = Tensor::stack(&squares, 0).sum(Kind::Double).double_value(&[]).sqrt();
        if max_norm > 0.0 && norm > max_norm {
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(max_norm / (norm + 1e-6));
                }
            });
        }
        norm
    }

    /// One Adam update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        tch::no_grad(|| {
            for ((_, p), (m, v)) in self.params.iter_mut().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                *m = &*m * self.beta1 + &g * (1.0 - self.beta1);
                *v = &*v * self.beta2 + g.square() * (1.0 - self.beta2);
                let update = (&*m / c1) / ((&*v / c2).sqrt() + self.eps) * lr;
                let _ = p.g_sub_(&update.to_kind(p.kind()));
            }
        });
    }

    /// Writes the moments and step as safetensors.
    pub fn save(&self, path: &Path) -> Result<(), OptimizerError> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        named.push(("step".into(), Tensor::from_slice(&[self.step])));
        Tensor::write_safetensors(&named, path).map_err(|source| OptimizerError::File { path: path.to_owned(), source })
    }

    /// Restores what [`Adam::save`] wrote; every moment must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<(), OptimizerError> {
        let stored: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|source| OptimizerError::File { path: path.to_owned(), source })?
            .into_iter()
            .collect();
        let get = |key: String, like: &Tensor| -> Result<Tensor, OptimizerError> {
            let t =
                stored.get(&key).ok_or_else(|| OptimizerError::Missing { path: path.to_owned(), key: key.clone() })?;
            if t.size() != like.size() {
                return Err(OptimizerError::Shape {
                    path: path.to_owned(),
                    key,
                    found: t.size(),
                    expected: like.size(),
                });
            }
            Ok(t.to_device(like.device()))
        };
        let mut m = Vec::new();
        let mut v = Vec::new();
        for ((name, _), (old_m, old_v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            m.push(get(format!("m.{name}"), old_m)?);
            v.push(get(format!("v.{name}"), old_v)?);
        }
        let step = stored
            .get("step")
            .ok_or_else(|| OptimizerError::Missing { path: path.to_owned(), key: "step".into() })?
            .int64_value(&[0]);
        (self.m, self.v, self.step) = (m, v, step);
        Ok(())
    }
}

/// Reading or writing the optimizer's state file.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    #[error("{path}: {source}")]
    File { path: std::path::PathBuf, source: tch::TchError },
    #[error("{path}: missing {key}")]
    Missing { path: std::path::PathBuf, key: String },
    #[error("{path}: {key} has shape {found:?}, expected {expected:?}")]
    Shape { path: std::path::PathBuf, key: String, found: Vec<i64>, expected: Vec<i64> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((inverse_sqrt_lr(1.0, 4, 0) - 0.25).abs() < 1e-12);
        assert!((inverse_sqrt_lr(1.0, 4, 3) - 1.0).abs() < 1e-12);
        assert!((inverse_sqrt_lr(1.0, 4, 15) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn adam_matches_a_hand_computed_first_step() {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut adam = Adam::new(&vs);
        let loss = (&w * Tensor::from_slice(&[3.0f32, 0.5])).sum(Kind::Float);
        loss.backward();
        adam.step(0.1);
        // First step: m̂ = g, v̂ = g², so the update is lr · g/|g| = ±0.1 per element.
        let got = Vec::<f32>::try_from(&w).unwrap();
        assert!((got[0] - 0.9).abs() < 1e-6 && (got[1] + 2.1).abs() < 1e-6, "{got:?}");
    }
}
