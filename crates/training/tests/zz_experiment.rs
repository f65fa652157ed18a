use tch::Device;
use xlmc_training::{Pair, TrainConfig, Trainer, batching::Rng, read_log};
use xlmc_transformer::{Config, Seq2Seq};

fn reverse_task(n: usize, seed: u64, words: u32) -> Vec<Pair> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 3 + rng.below(15);
            let source: Vec<u32> = (0..len).map(|_| 14 + rng.below(words as usize) as u32).collect();
            let target = source.iter().rev().map(|t| 14 + (t - 14 + 7) % words).collect();
            (source, target)
        })
        .collect()
}

fn detok(ids: &[u32]) -> String {
    ids.iter().map(|t| format!("w{t}")).collect::<Vec<_>>().join(" ")
}

#[test]
#[ignore]
fn experiment() {
    tch::set_num_threads(2);
    let words: u32 = std::env::var("WORDS").map(|v| v.parse().unwrap()).unwrap_or(30);
    let n_words: i64 = std::env::var("NWORDS").map(|v| v.parse().unwrap()).unwrap_or(14 + words as i64);
    let dim: i64 = std::env::var("DIM").map(|v| v.parse().unwrap()).unwrap_or(64);
    let layers: i64 = std::env::var("LAYERS").map(|v| v.parse().unwrap()).unwrap_or(2);
    let dropout: f64 = std::env::var("DROPOUT").map(|v| v.parse().unwrap()).unwrap_or(0.0);
    let updates: i64 = std::env::var("UPDATES").map(|v| v.parse().unwrap()).unwrap_or(400);
    let lr: f64 = std::env::var("LR").map(|v| v.parse().unwrap()).unwrap_or(2e-3);
    let (train, dev) = (reverse_task(5000, 1, words), reverse_task(100, 2, words));
    let config = Config {
        emb_dim: dim,
        n_enc_layers: layers,
        n_dec_layers: layers,
        dropout,
        attention_dropout: dropout,
        ..Config::tiny(n_words)
    };
    tch::manual_seed(0);
    let mut model = Seq2Seq::new(config, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer {
        config: TrainConfig {
            max_tokens: 800,
            lr,
            warmup_updates: 100,
            max_updates: updates,
            eval_every: 100,
            checkpoint_every: 10000,
            ..Default::default()
        },
        dir: dir.path().into(),
        train: &train,
        dev: &dev,
    };
    trainer.run(&mut model, &detok, |_| {}).unwrap();
    for l in read_log(dir.path()).iter().filter(|l| l.dev_bleu.is_some()) {
        println!(
            "update {} loss {:.3} valid {:.3} bleu {:.2}",
            l.update,
            l.loss,
            l.valid_nll.unwrap(),
            l.dev_bleu.unwrap()
        );
    }
}
