//! `server.toml` (provenix_server::config::Config::parse) on arbitrary
//! UTF-8: TOML decoding, the durations and every validation rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provenix_server::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let _ = config.compression.zstd_level();
        // Reads the environment first; none of its variables is set here.
        let _ = config.token_secret();
    }
});
