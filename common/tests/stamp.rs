//! Stamp building and finding on hand-made SEI NAL units and access units.

use glasswatch_common::fingerprint::fingerprint_annexb;
use glasswatch_common::h264::{
    add_emulation_prevention, annexb_nals, remove_emulation_prevention, split_access_units,
};
use glasswatch_common::sei::{
    build_sei_nal, find_stamp_annexb, find_stamp_avcc, parse_sei_nal, stream_tag, FrameStamp,
    SeiError,
};

/// x264's own user data unregistered UUID, dc45e9bd-e6d9-48b7-962c-d820d923eeef.
const X264_UUID: [u8; 16] = [
    0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7, 0x96, 0x2c, 0xd8, 0x20, 0xd9, 0x23, 0xee, 0xef,
];

/// The start of x264's version string as libx264 0.164 writes it (tune=zerolatency, ultrafast).
const X264_TEXT: &str = "x264 - core 164 r3095 baee400 - H.264/MPEG-4 AVC codec - Copyleft 2003-2022 - \
    http://www.videolan.org/x264.html - options: cabac=0 ref=1 deblock=0:0:0 analyse=0:0 me=dia subme=0 \
    psy=1 psy_rd=1.00:0.00 mixed_ref=0 me_range=16 chroma_me=1 trellis=0 8x8dct=0 cqm=0 deadzone=21,11 \
    fast_pskip=1 chroma_qp_offset=0 threads=2 lookahead_threads=2 sliced_threads=1 slices=2 nr=0 \
    decimate=1 interlaced=0 bluray_compat=0 constrained_intra=0 bframes=0 weightp=0 keyint=15 \
    keyint_min=1 scenecut=0 intra_refresh=0 rc=cbr mbtree=0 bitrate=800 ratetol=1.0 qcomp=0.60 \
    qpmin=0 qpmax=69 qpstep=4 vbv_maxrate=800 vbv_bufsize=800 nal_hrd=none filler=0 ip_ratio=1.40 aq=0\0";

fn fixture_stamp(seq: u64) -> FrameStamp {
    FrameStamp {
        keyframe: seq % 15 == 0,
        stream_tag: stream_tag("fixture", "cam0"),
        seq,
        capture_us: 1_795_500_025_165_523 + 33_333 * seq as i64,
    }
}

/// Appends one sei_message (7.3.2.3.1) with 0xFF-extended type and size.
fn sei_message(payload_type: usize, payload: &[u8], rbsp: &mut Vec<u8>) {
    for mut value in [payload_type, payload.len()] {
        while value >= 255 {
            rbsp.push(0xFF);
            value -= 255;
        }
        rbsp.push(value as u8);
    }
    rbsp.extend_from_slice(payload);
}

/// Wraps SEI messages into a NAL unit: header, emulation prevention, rbsp trailing bits.
fn sei_nal(messages: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut rbsp = Vec::new();
    for (payload_type, payload) in messages {
        sei_message(*payload_type, payload, &mut rbsp);
    }
    rbsp.push(0x80);
    let mut nal = vec![0x06];
    add_emulation_prevention(&rbsp, &mut nal);
    nal
}

fn x264_payload() -> Vec<u8> {
    let mut p = X264_UUID.to_vec();
    p.extend_from_slice(X264_TEXT.as_bytes());
    p
}

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&u32::try_from(nal.len()).unwrap().to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

const AUD: &[u8] = &[0x09, 0xF0];
const SPS: &[u8] = &[0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF, 0xE5, 0xC0];
const PPS: &[u8] = &[0x68, 0xCE, 0x3C, 0x80];
const IDR_A: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x00, 0x21];
const IDR_B: &[u8] = &[0x65, 0x03, 0x42, 0x11];

#[test]
fn stream_tag_of_fixture() {
    assert_eq!(stream_tag("fixture", "cam0"), 0x6a62e076);
}

#[test]
fn stamp_round_trip() {
    for seq in [0, 1, 30, 255, 256, 65_536, u64::MAX] {
        let stamp = fixture_stamp(seq);
        let mut nal = Vec::new();
        build_sei_nal(&stamp, &mut nal);
        assert_eq!(nal[0], 0x06);
        assert_eq!(nal.last(), Some(&0x80));
        assert_eq!(parse_sei_nal(&nal), Ok(Some(stamp)));
    }
}

#[test]
fn build_appends() {
    let mut out = vec![0xAB];
    build_sei_nal(&fixture_stamp(7), &mut out);
    assert_eq!(out[0], 0xAB);
    assert_eq!(parse_sei_nal(&out[1..]), Ok(Some(fixture_stamp(7))));
}

/// True when `nal` obeys 7.4.1: no 00 00 00, 00 00 01 or 00 00 02 anywhere, and every 00 00 03 is
/// followed by a byte of at most 3 or ends the NAL unit.
fn is_well_escaped(nal: &[u8]) -> bool {
    nal.windows(3).enumerate().all(|(i, w)| match w {
        [0, 0, x] if *x <= 2 => false,
        [0, 0, 3] => nal.get(i + 3).is_none_or(|&next| next <= 3),
        _ => true,
    })
}

#[test]
fn emulation_prevention_on_zero_payload() {
    let stamp = FrameStamp {
        keyframe: false,
        stream_tag: 0,
        seq: 0,
        capture_us: 0,
    };
    let mut nal = Vec::new();
    build_sei_nal(&stamp, &mut nal);
    assert!(is_well_escaped(&nal), "{nal:02x?}");
    // flags + tag + seq + capture_us are 21 zero bytes: one 0x03 after every two zeros, and the
    // 0x80 trailing byte needs none.
    assert_eq!(nal.len(), 1 + 2 + 38 + 1 + 10);
    assert_eq!(parse_sei_nal(&nal), Ok(Some(stamp)));
    assert_eq!(
        remove_emulation_prevention(&nal[1..]).len(),
        nal.len() - 1 - 10
    );
}

#[test]
fn emulation_prevention_round_trips() {
    let cases: [&[u8]; 6] = [
        &[],
        &[0, 0],
        &[0, 0, 0],
        &[0, 0, 3, 0, 0, 3],
        &[1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1],
        &[0xFF, 0, 0, 4, 0, 0, 0x80],
    ];
    for rbsp in cases {
        let mut ebsp = Vec::new();
        add_emulation_prevention(rbsp, &mut ebsp);
        assert!(is_well_escaped(&ebsp), "{ebsp:02x?}");
        assert_eq!(remove_emulation_prevention(&ebsp), rbsp);
    }
}

#[test]
fn stamp_among_x264_sei() {
    let stamp = fixture_stamp(0);
    let payload = stamp.to_payload().to_vec();
    let x264 = x264_payload();
    assert!(
        x264.len() > 255,
        "the x264 payload needs a multi-byte payloadSize"
    );

    // x264's SEI alone: no stamp, no error.
    let alone = sei_nal(&[(5, x264.clone())]);
    assert_eq!(parse_sei_nal(&alone), Ok(None));

    // Two messages in one NAL unit, in both orders, and behind a recovery point message.
    for messages in [
        vec![(5, x264.clone()), (5, payload.clone())],
        vec![(5, payload.clone()), (5, x264.clone())],
        vec![(6, vec![0x84]), (5, x264.clone()), (5, payload.clone())],
        vec![(300, vec![0; 3]), (5, payload.clone())],
    ] {
        assert_eq!(parse_sei_nal(&sei_nal(&messages)), Ok(Some(stamp)));
    }

    // x264's SEI in its own NAL unit before ours, as in an encoder's first access unit.
    let mut ours = Vec::new();
    build_sei_nal(&stamp, &mut ours);
    let nals: [&[u8]; 7] = [AUD, SPS, PPS, &alone, &ours, IDR_A, IDR_B];
    assert_eq!(find_stamp_annexb(&annexb(&nals)), Ok(Some(stamp)));
    assert_eq!(find_stamp_avcc(&avcc(&nals), 4), Ok(Some(stamp)));
}

#[test]
fn stamp_after_aud_sps_pps() {
    let stamp = fixture_stamp(45);
    let mut sei = Vec::new();
    build_sei_nal(&stamp, &mut sei);
    let au = annexb(&[AUD, SPS, PPS, &sei, IDR_A, IDR_B]);
    assert_eq!(find_stamp_annexb(&au), Ok(Some(stamp)));
    let with_3_byte_codes: Vec<u8> = annexb_nals(&au)
        .flat_map(|(_, nal)| [&[0, 0, 1][..], nal].concat())
        .collect();
    assert_eq!(find_stamp_annexb(&with_3_byte_codes), Ok(Some(stamp)));
    assert_eq!(split_access_units(&au), vec![0..au.len()]);
    assert_eq!(
        fingerprint_annexb(&au),
        Some(xxhash_rust::xxh3::xxh3_64(&[IDR_A, IDR_B].concat()))
    );
}

#[test]
fn missing_and_malformed_stamps() {
    assert_eq!(find_stamp_annexb(&annexb(&[AUD, IDR_A])), Ok(None));
    assert_eq!(find_stamp_annexb(&[]), Ok(None));

    // A truncated foreign SEI is reported with its NAL offset...
    let broken = [0x06, 0x05, 0x40, 0x01];
    let au = annexb(&[AUD, &broken, IDR_A]);
    assert_eq!(
        find_stamp_annexb(&au),
        Err(SeiError::InNal {
            nal_offset: 10,
            inner: Box::new(SeiError::Truncated {
                offset: 2,
                needed: 63
            })
        })
    );
    // ...but does not hide a stamp after it.
    let stamp = fixture_stamp(3);
    let mut ours = Vec::new();
    build_sei_nal(&stamp, &mut ours);
    let au = annexb(&[AUD, &broken, &ours, IDR_A]);
    assert_eq!(find_stamp_annexb(&au), Ok(Some(stamp)));

    // Our UUID with another version is an error, not a silent miss.
    let mut v2 = stamp.to_payload();
    v2[16] = 2;
    assert_eq!(
        parse_sei_nal(&sei_nal(&[(5, v2.to_vec())])),
        Err(SeiError::UnsupportedVersion(2))
    );

    // Broken length prefixes.
    let sample = avcc(&[AUD, IDR_A]);
    assert!(matches!(
        find_stamp_avcc(&sample[..sample.len() - 1], 4),
        Err(SeiError::Nal(_))
    ));
}
