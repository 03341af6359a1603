//! The custom-archive indexer against real pg_dump output: a dump written to a pipe, once
//! indexed and patched, must equal byte for byte the dump pg_dump writes to a seekable
//! file (apart from the creation time in the header), and restore with parallel jobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use arca::pgarchive::{offset_bytes, parse_toc, Indexer, OFFSET_NOT_SET, OFFSET_SET};

fn pg_env() -> String {
    format!(
        "PGHOST={} PGPORT={} PGUSER={} PGPASSWORD=\"$(cat '{}')\"",
        env("ARCA_TEST_PG_HOST"),
        env("ARCA_TEST_PG_PORT"),
        env("ARCA_TEST_PG_USER"),
        env("ARCA_TEST_PG_PASSWORD_FILE")
    )
}

#[test]
fn a_piped_dump_indexed_and_patched_equals_the_seekable_dump() {
    let ws = Workspace::new();
    let db = unique("arca_pgarchive");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE a (id int PRIMARY KEY, t text);
         INSERT INTO a SELECT i, repeat('x', i % 300) FROM generate_series(1, 20000) i;
         CREATE TABLE empty (id int);
         CREATE TABLE b (id bigserial PRIMARY KEY, body bytea);
         INSERT INTO b (body) SELECT decode(md5(i::text), 'hex') FROM generate_series(1, 3000) i;
         CREATE INDEX a_t ON a (t);
         SELECT lo_from_bytea(0, 'a large object');",
    );
    let piped = ws.path("piped.pgdump");
    let seekable = ws.path("seekable.pgdump");
    sh(&format!(
        "{e} pg_dump -Fc -Z0 {db} | cat > '{}' && {e} pg_dump -Fc -Z0 -f '{}' {db}",
        piped.display(),
        seekable.display(),
        e = pg_env()
    ));
    let mut bytes = std::fs::read(&piped).unwrap();
    let want = std::fs::read(&seekable).unwrap();

    // Index the piped dump in small pieces, then patch each block's offset in.
    let mut ix = Indexer::new();
    let mut blocks = Vec::new();
    for c in bytes.chunks(4096) {
        blocks.extend(ix.feed(c));
    }
    assert!(ix.complete(), "{:?}", ix.failed());
    let toc = ix.toc().unwrap().clone();
    let with_data = toc
        .entries
        .iter()
        .filter(|e| e.data_state == OFFSET_NOT_SET)
        .count();
    assert!(with_data >= 4, "tables and large objects have data blocks");
    assert_eq!(blocks.len(), with_data, "one block per entry with data");
    for b in &blocks {
        let e = toc.entries.iter().find(|e| e.id == b.id).unwrap();
        let (at, patch) = ix.patch(*b).expect("an entry with unknown position");
        assert_eq!(at, e.offset_field);
        assert_eq!(patch, offset_bytes(b.start, toc.off_size));
        let at = at as usize;
        bytes[at..at + patch.len()].copy_from_slice(&patch);
    }

    // The seekable dump records the same positions.
    let seek_toc = parse_toc(&want).unwrap().unwrap();
    for b in &blocks {
        let e = seek_toc.entries.iter().find(|e| e.id == b.id).unwrap();
        assert_eq!(e.data_state, OFFSET_SET);
        assert_eq!(e.data_pos, b.start, "entry {} ({})", e.id, e.desc);
    }
    // Byte for byte, apart from the creation time (7 integers after the compression field).
    assert_eq!(bytes.len(), want.len());
    let date = 16..16 + 7 * 5;
    let differ: Vec<usize> = (0..bytes.len())
        .filter(|i| bytes[*i] != want[*i] && !date.contains(i))
        .collect();
    assert!(
        differ.is_empty(),
        "bytes differ at {:?}",
        &differ[..differ.len().min(10)]
    );

    // pg_restore reads the patched file in parallel into a new database.
    std::fs::write(&piped, &bytes).unwrap();
    let copy = unique("arca_pgarchive_copy");
    psql("postgres", &format!("CREATE DATABASE {copy}"));
    sh(&format!(
        "{} pg_restore -j2 --exit-on-error -d {copy} '{}'",
        pg_env(),
        piped.display()
    ));
    for q in [
        "SELECT count(*) || md5(string_agg(t, ',' ORDER BY id)) FROM a",
        "SELECT count(*) || md5(string_agg(body::text, ',' ORDER BY id)) FROM b",
        "SELECT count(*) FROM pg_largeobject_metadata",
    ] {
        assert_eq!(psql(&copy, q), psql(&db, q), "{q}");
    }
    psql("postgres", &format!("DROP DATABASE {copy}"));
    psql("postgres", &format!("DROP DATABASE {db}"));
}
