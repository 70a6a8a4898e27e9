//! The `__consumer_offsets` record codecs (offset commit and group metadata keys and
//! values, Kafka's formats): decoding arbitrary bytes never panics or over-allocates, and
//! whatever decodes re-encodes to something that decodes to the same value.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use oxbow_broker::group::records::{GroupValue, OffsetValue, RecordKey};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let buf = Bytes::copy_from_slice(rest);
    match which % 3 {
        0 => {
            if let Ok(Some(key)) = RecordKey::decode(buf) {
                let again = RecordKey::decode(key.encode()).expect("re-encoded key decodes");
                assert_eq!(again, Some(key));
            }
        }
        1 => {
            if let Ok(value) = OffsetValue::decode(buf) {
                let again = OffsetValue::decode(value.encode()).expect("re-encoded offset decodes");
                assert_eq!(again, value);
            }
        }
        _ => {
            if let Ok(value) = GroupValue::decode(buf) {
                let again = GroupValue::decode(value.encode()).expect("re-encoded group decodes");
                assert_eq!(again, value);
            }
        }
    }
});
