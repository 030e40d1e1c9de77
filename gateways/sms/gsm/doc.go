// Package gsm holds the text encodings and the segmentation rules of the
// UIMS SMS gateway: the GSM 7-bit default alphabet, UCS-2, Latin-1, the
// user data header (UDH) with its concatenation information elements, and
// reassembly of concatenated messages. It is pure: no I/O, no globals
// besides constant tables.
//
// References:
//
//   - 3GPP TS 23.038 §6.2.1 GSM 7-bit default alphabet and §6.2.1.1 its
//     extension table (reached with ESC, 0x1B); §6.1.2.1.1 packing of
//     septets into octets; §6.1.2.3.1 CR padding of a final 7-bit gap;
//     §6.2.3 UCS-2 (this package writes UTF-16BE so that characters beyond
//     the BMP, such as emoji, survive as surrogate pairs, as handsets do).
//   - 3GPP TS 23.040 §9.2.3.24 user data header, §9.2.3.24.1 concatenated
//     short messages with 8-bit reference (IEI 0x00) and §9.2.3.24.8 with
//     16-bit reference (IEI 0x08); §9.2.3.16 user data length (160 septets
//     or 140 octets).
//   - SMPP 3.4 §5.2.19 data_coding: 0 SMSC default alphabet (GSM 7-bit
//     here), 3 Latin-1, 8 UCS-2.
//
// GSM 7-bit text is exchanged UNPACKED, one septet per octet: that is what
// an SMPP short_message with data_coding 0 carries over TCP, and the SMSC
// packs it for the air interface. With a UDH the short_message is the UDH
// octets followed by unpacked septets; the 153-septet part size already
// accounts for the 6-octet UDH plus one fill bit on the air. [Pack] and
// [Unpack] implement the packed form (with fill bits after a UDH) for
// links that need it.
package gsm
