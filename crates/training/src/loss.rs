//! Label-smoothed cross-entropy, and the teacher-forced batch it is computed on.

use tch::{Kind, Tensor};
use xlmc_transformer::Seq2Seq;

/// Summed loss and summed plain NLL over `targets` [N] given `logits` [N, vocab]:
/// `(1 − ε)·NLL + ε·mean over the vocabulary of −log p` (the smoothing mass spread uniformly).
pub fn label_smoothed(logits: &Tensor, targets: &Tensor, epsilon: f64) -> (Tensor, Tensor) {
    let log_probs = logits.log_softmax(-1, Kind::Float);
    let nll = -log_probs.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1);
    let smooth = -log_probs.mean_dim(-1, false, Kind::Float);
    let loss = (&nll * (1.0 - epsilon) + smooth * epsilon).sum(Kind::Float);
    (loss, nll.sum(Kind::Float))
}

/// Decoder inputs `</s> y1 … ym` and outputs `y1 … ym </s>` for a batch of targets, padded with
/// `pad` to the longest: ([bs, len], [bs, len], lengths [bs]).
pub fn decoder_io(targets: &[&[u32]], pad: i64, eos: i64, device: tch::Device) -> (Tensor, Tensor, Tensor) {
    let longest = targets.iter().map(|t| t.len()).max().unwrap_or(0) + 1;
    let mut input = vec![pad; targets.len() * longest];
    let mut output = vec![pad; targets.len() * longest];
    let mut lengths = Vec::with_capacity(targets.len());
    for (row, target) in targets.iter().enumerate() {
        let base = row * longest;
        input[base] = eos;
        for (i, &t) in target.iter().enumerate() {
            input[base + i + 1] = i64::from(t);
            output[base + i] = i64::from(t);
        }
        output[base + target.len()] = eos;
        lengths.push(target.len() as i64 + 1);
    }
    let shape = [targets.len() as i64, longest as i64];
    (
        Tensor::from_slice(&input).view(shape).to(device),
        Tensor::from_slice(&output).view(shape).to(device),
        Tensor::from_slice(&lengths).to(device),
    )
}

/// Rows of `per_position` [bs, len, …] and `output` [bs, len] where `mask` [bs, len] holds:
/// padding removed, row by row, position by position.
pub fn unpad(per_position: &Tensor, output: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let keep = mask.flatten(0, -1).nonzero().squeeze_dim(1);
    let width = per_position.size()[2];
    (per_position.reshape([-1, width]).index_select(0, &keep), output.flatten(0, -1).index_select(0, &keep))
}

/// A teacher-forced batch: logits at every target position and the tokens to predict
/// (`y1 … ym </s>` after the input `</s> y1 … ym`), padding removed: ([N, vocab], [N]).
pub fn teacher_forced(
    model: &Seq2Seq,
    pairs: &[(&[u32], &[u32])],
    source_lang: i64,
    target_lang: i64,
    train: bool,
) -> (Tensor, Tensor) {
    let translator = model.translator(source_lang, target_lang);
    let sources: Vec<Vec<u32>> = pairs.iter().map(|(s, _)| s.to_vec()).collect();
    let (src, src_len) = translator.batch(&sources).expect("sources fit the model's positions");
    let targets: Vec<&[u32]> = pairs.iter().map(|(_, t)| *t).collect();
    let (input, output, lengths) = decoder_io(&targets, model.config.pad_index, model.config.eos_index, src.device());
    let (encoded, src_mask) = model.encoder.forward(&src, &src_len, source_lang, None, train);
    let (hidden, mask) = model.decoder.forward(&input, &lengths, target_lang, Some((&encoded, &src_mask)), train);
    let (hidden, output) = unpad(&hidden, &output, &mask);
    (model.decoder.logits(&hidden), output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_smoothing_the_loss_is_the_nll_by_hand() {
        let logits = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 2.0, 0.0, 0.0]).view([2, 3]);
        let targets = Tensor::from_slice(&[2i64, 0]);
        let (loss, nll) = label_smoothed(&logits, &targets, 0.0);
        let lse = |a: f64, b: f64, c: f64| (a.exp() + b.exp() + c.exp()).ln();
        let expected = (lse(0.0, 1.0, 2.0) - 2.0) + (lse(2.0, 0.0, 0.0) - 2.0);
        assert!((loss.double_value(&[]) - expected).abs() < 1e-5);
        assert!((nll.double_value(&[]) - expected).abs() < 1e-5);
        let (smoothed, _) = label_smoothed(&logits, &targets, 0.1);
        assert!(smoothed.double_value(&[]) > expected, "smoothing penalises confident predictions");
    }
}
