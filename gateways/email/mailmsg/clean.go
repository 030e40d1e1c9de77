package mailmsg

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// cleanValue makes a decoded header value safe to copy into another header:
// invalid UTF-8 becomes U+FFFD and every control character other than TAB
// (C0 and DEL, so CR, LF and NUL included) becomes a space. Nothing else is
// changed.
func cleanValue(s string) string {
	if isCleanValue(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func isCleanValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// maxIDBytes caps message identifiers (the RFC 5322 line limit).
const maxIDBytes = 998

// cleanID cleans a message identifier: angle brackets, white space and
// control characters are removed, invalid UTF-8 replaced, and the result
// capped at maxIDBytes.
func cleanID(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' {
			return -1
		}
		return r
	}, s)
	return truncateUTF8(s, maxIDBytes)
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MaxFilenameBytes is the longest file name SanitizeFilename returns.
const MaxFilenameBytes = 255

// maxExtBytes is the longest extension SanitizeFilename keeps when it has
// to shorten a name.
const maxExtBytes = 16

// SanitizeFilename turns an attachment file name taken from a message into
// a safe base name:
//
//   - invalid UTF-8 becomes '_'; control characters (NUL included) and
//     Unicode format characters (bidirectional overrides, zero-width
//     characters) are removed;
//   - '\' counts as a path separator and only the last path element is
//     kept, so "../../etc/passwd", "..\..\x", "/abs" and "C:\x" become
//     "passwd", "x", "abs" and "x";
//   - the characters Windows forbids (: * ? " < > |) become '_';
//   - leading and trailing dots and spaces are removed ("..", "." and
//     ".hidden" cannot survive);
//   - a Windows device name (CON, NUL, COM1, ...) gets a '_' prefix;
//   - the result is capped at MaxFilenameBytes, keeping a short extension.
//
// The result may be empty, meaning "no usable name".
func SanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "_")
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			return -1
		case unicode.Is(unicode.Cf, r):
			return -1
		case r == '\\':
			return '/'
		}
		return r
	}, name)
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if strings.ContainsRune(`:*?"<>|`, r) {
			return '_'
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if isWindowsDeviceName(name) {
		name = "_" + name
	}
	if len(name) > MaxFilenameBytes {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= maxExtBytes {
			ext = name[i:]
		}
		name = truncateUTF8(name[:len(name)-len(ext)], MaxFilenameBytes-len(ext)) + ext
	}
	return name
}

func isWindowsDeviceName(name string) bool {
	stem := name
	if i := strings.IndexByte(stem, '.'); i >= 0 {
		stem = stem[:i]
	}
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(stem) == 4 && (strings.HasPrefix(stem, "COM") || strings.HasPrefix(stem, "LPT")) &&
		stem[3] >= '0' && stem[3] <= '9' {
		return true
	}
	return false
}
