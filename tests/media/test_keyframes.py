"""Keyframe starts recognised from RTP payloads alone (VP8 descriptor, H.264 NAL types)."""

from __future__ import annotations

from roomwire.media.keyframes import h264_keyframe_start, keyframe_detector, vp8_keyframe_start

KEY_TAG = b"\x50\x42\x00\x9d\x01\x2a"  # a keyframe's frame tag: bit 0 clear
DELTA_TAG = b"\x31\x42\x00"


def test_vp8_keyframe_start_reads_past_every_descriptor_field():
    assert vp8_keyframe_start(b"\x10" + KEY_TAG)  # S=1, PID=0, no extension
    assert not vp8_keyframe_start(b"\x10" + DELTA_TAG)
    assert not vp8_keyframe_start(b"\x00" + KEY_TAG), "not the start of a partition"
    assert not vp8_keyframe_start(b"\x11" + KEY_TAG), "partition 1, not the first"
    # X with I (15-bit picture id), L (TL0PICIDX), T/K (TID/KEYIDX)
    assert vp8_keyframe_start(b"\x90\xf0\x80\x01\x05\x20" + KEY_TAG)
    assert not vp8_keyframe_start(b"\x90\xf0\x80\x01\x05\x20" + DELTA_TAG)
    # X with I (7-bit picture id) only
    assert vp8_keyframe_start(b"\x90\x80\x05" + KEY_TAG)
    assert not vp8_keyframe_start(b"\x90\x80\x05" + DELTA_TAG)
    for truncated in (b"", b"\x10", b"\x90", b"\x90\x80", b"\x90\x80\x85", b"\x90\xf0\x80\x01\x05\x20"):
        assert not vp8_keyframe_start(truncated)


def test_h264_keyframe_start_single_nal_stap_a_and_fu_a():
    assert h264_keyframe_start(b"\x65\x88\x84")  # IDR slice
    assert h264_keyframe_start(b"\x67\x42\x00\x1f")  # SPS, which heads every keyframe
    assert not h264_keyframe_start(b"\x68\xce")  # PPS alone
    assert not h264_keyframe_start(b"\x41\x9a")  # non-IDR slice
    assert h264_keyframe_start(b"\x18\x00\x02\x67\x42\x00\x02\x68\xce")  # STAP-A with SPS, PPS
    assert h264_keyframe_start(b"\x18\x00\x02\x09\x10\x00\x03\x65\x88\x84")  # STAP-A: AUD, IDR
    assert not h264_keyframe_start(b"\x18\x00\x02\x09\x10\x00\x02\x41\x9a")
    assert h264_keyframe_start(b"\x7c\x85\x88")  # FU-A start of an IDR
    assert not h264_keyframe_start(b"\x7c\x05\x88"), "an IDR's middle"
    assert not h264_keyframe_start(b"\x7c\x81\x9a"), "a non-IDR's start"
    for truncated in (b"", b"\x18", b"\x18\x00", b"\x7c"):
        assert not h264_keyframe_start(truncated)


def test_detectors_by_codec():
    assert keyframe_detector("video/VP8") is vp8_keyframe_start
    assert keyframe_detector("video/h264") is h264_keyframe_start
    assert keyframe_detector("audio/opus") is None
