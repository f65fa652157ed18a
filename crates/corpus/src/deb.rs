//! Reading files out of a Debian package (`ar` archive holding `data.tar.{xz,zst}`) in process.

use std::{io::Read, path::Path};

use crate::CorpusError;

/// Every regular file of the package's data archive whose path `wanted` accepts, as
/// (path without leading `./`, bytes).
pub fn extract(
    source_name: &'static str,
    deb: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>, CorpusError> {
    let fail = |detail: String| CorpusError::Archive { source_name, path: deb.to_owned(), detail };
    let file = std::fs::File::open(deb).map_err(CorpusError::io(deb))?;
    let mut archive = ar::Archive::new(file);
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| fail(format!("not a Debian package ({e})")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        let mut compressed = Vec::new();
        entry.read_to_end(&mut compressed).map_err(|e| fail(format!("reading {name}: {e}")))?;
        let tar_bytes = decompress(&name, &compressed).map_err(|e| fail(format!("{name}: {e}")))?;
        return read_tar(&tar_bytes, &wanted).map_err(|e| fail(format!("{name}: {e}")));
    }
    Err(fail("no data.tar member: the package is truncated or corrupt".into()))
}

fn decompress(name: &str, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &compressed[..], &mut out).map_err(|e| format!("corrupt xz data ({e})"))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(compressed)
            .map_err(|e| format!("corrupt zstd data ({e})"))?
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt zstd data ({e})"))?;
    } else if name == "data.tar" {
        out.extend_from_slice(compressed);
    } else {
        return Err("unsupported compression (expected .xz or .zst)".into());
    }
    Ok(out)
}

fn read_tar(bytes: &[u8], wanted: &impl Fn(&str) -> bool) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("corrupt tar ({e})"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().trim_start_matches("./").to_owned();
        if wanted(&path) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| format!("corrupt tar ({e})"))?;
            files.push((path, data));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal .deb: debian-binary, control.tar.xz (empty), data.tar.xz with `files`.
    fn make_deb(path: &Path, files: &[(&str, &str)]) {
        let mut tar_builder = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar_builder.append_data(&mut header, format!("./{name}"), body.as_bytes()).unwrap();
        }
        let tar_bytes = tar_builder.into_inner().unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &tar_bytes[..], &mut xz).unwrap();
        let mut deb = ar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, data) in [("debian-binary", b"2.0\n".to_vec()), ("data.tar.xz", xz)] {
            let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            deb.append(&header, &data[..]).unwrap();
        }
    }

    #[test]
    fn files_come_out_of_a_deb_filtered_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("p.deb");
        make_deb(&deb, &[("usr/share/help/a.html", "<p>a</p>"), ("usr/share/doc/copyright", "MPL")]);
        let files = extract("test", &deb, |p| p.ends_with(".html")).unwrap();
        assert_eq!(files, vec![("usr/share/help/a.html".to_owned(), b"<p>a</p>".to_vec())]);
    }

    #[test]
    fn a_truncated_deb_is_reported_with_its_source_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("p.deb");
        make_deb(&deb, &[("usr/a.html", "x")]);
        let bytes = std::fs::read(&deb).unwrap();
        std::fs::write(&deb, &bytes[..bytes.len() - 40]).unwrap();
        let err = extract("LibreOffice help", &deb, |_| true).unwrap_err().to_string();
        assert!(err.starts_with("LibreOffice help: ") && err.contains("p.deb"), "{err}");
    }
}
