//! A WebSocket text frame in the V1 framing: decode, then the replies and payload checks the socket makes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use location_sharing::realtime::protocol::Vsn;

fuzz_target!(|data: &[u8]| location_sharing_fuzz::fuzz_frame(Vsn::V1, data));
