//! Fuzzes the CTR string parser, `LogArgs::from_str`: the kernel hands the daemon this text
//! from a table, and the daemon prints it back in STATUS_TABLE and keeps it in shadows. It
//! must not panic, and whatever parses must print to a string that parses to the same value
//! and prints to the same string again (the printed form is canonical).
#![no_main]

use dm_ulog_actors::region::LogArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(args) = text.parse::<LogArgs>() else { return };
    let printed = args.to_string();
    let again: LogArgs = printed.parse().unwrap_or_else(|e| panic!("{printed:?}: {e}"));
    assert_eq!(again, args, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
    let _ = (args.status_table(), args.status_info(Some(("x", 'A'))), args.region_count());
});
