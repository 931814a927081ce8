//! Fuzz target: reading a write-behind queue entry (`edgecache::engine::write_behind::Record`)
//! from arbitrary stream fields, as a flush does with whatever Redis returns. Each input line
//! is one field, `name=value`. Decoding never panics, and what decodes encodes to fields that
//! decode to the same request.
#![no_main]

use edgecache::engine::write_behind::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<(String, Vec<u8>)> = data
        .split(|&b| b == b'\n')
        .map(|line| {
            let (name, value) = match line.iter().position(|&b| b == b'=') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &b""[..]),
            };
            // Header lines of the `headers` field are separated by `\n`, which splits lines
            // here: a `\r` in the value stands for it.
            let value: Vec<u8> = value
                .iter()
                .map(|&b| if b == b'\r' { b'\n' } else { b })
                .collect();
            (String::from_utf8_lossy(name).into_owned(), value)
        })
        .collect();
    if let Some(record) = Record::from_fields(&fields) {
        let owned = |r: &Record| -> Vec<(String, Vec<u8>)> {
            r.to_fields()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect()
        };
        let again = Record::from_fields(&owned(&record)).expect("re-encoded entry decodes");
        assert_eq!(again.head.method, record.head.method);
        assert_eq!(again.head.path_and_query, record.head.path_and_query);
        assert_eq!(again.body, record.body);
        let third = Record::from_fields(&owned(&again)).expect("decodes");
        assert_eq!(third, again, "encoding is stable after one round");
    }
});
