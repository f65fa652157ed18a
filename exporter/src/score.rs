//! `exporter score`: corpus BLEU and chrF of a hypothesis file against a reference file,
//! equal to `python -m sacrebleu REF -i HYP -m bleu chrf` (see xlmc-scoring).

use std::path::Path;

use anyhow::{Context, bail};
use xlmc_scoring::{BLEU_SIGNATURE, CHRF_SIGNATURE, corpus_bleu, corpus_chrf};

use crate::cli::{ScoreArgs, ScoreFormat};

/// Reads a UTF-8 text file into sacreBLEU-style lines; the error names the flag and file.
fn read_lines(flag: &str, path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{flag} {}: not valid UTF-8 (line {line})", path.display())
    })
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<String> {
    let (ref_text, hyp_text) = (read_lines("--ref", &args.reference)?, read_lines("--hyp", &args.hypothesis)?);
    let (references, hypotheses) = (xlmc_scoring::lines(&ref_text), xlmc_scoring::lines(&hyp_text));
    if references.len() != hypotheses.len() {
        bail!(
            "--hyp {} has {} lines but --ref {} has {}: they must be parallel, one line per segment",
            args.hypothesis.display(),
            hypotheses.len(),
            args.reference.display(),
            references.len()
        );
    }
    let bleu = corpus_bleu(&hypotheses, &references)?;
    let chrf = corpus_chrf(&hypotheses, &references)?;
    Ok(match args.format {
        ScoreFormat::Text => format!(
            "{bleu}\nchrF = {:.2}\nBLEU signature: {BLEU_SIGNATURE}\nchrF signature: {CHRF_SIGNATURE}\nsegments: {}\n",
            chrf.score,
            hypotheses.len()
        ),
        ScoreFormat::Json => {
            serde_json::json!({
                "segments": hypotheses.len(),
                "bleu": {
                    "score": bleu.score,
                    "precisions": bleu.precisions,
                    "bp": bleu.bp,
                    "ratio": bleu.ratio(),
                    "hyp_len": bleu.stats.hyp_len,
                    "ref_len": bleu.stats.ref_len,
                    "signature": BLEU_SIGNATURE,
                },
                "chrf": { "score": chrf.score, "signature": CHRF_SIGNATURE },
            })
            .to_string()
                + "\n"
        }
    })
}
