package payflow

import "strings"

// NormalizePhone accepts an E.164 number (+821012345678) or a Korean mobile
// number in the 010 form (010-1234-5678, 01012345678) and returns E.164.
func NormalizePhone(s string) (string, error) {
	if s == "" {
		return "", invalid("customer.phone", "is required")
	}
	if len(s) > 32 {
		return "", invalid("customer.phone", "is too long")
	}
	var digits strings.Builder
	plus := strings.HasPrefix(s, "+")
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits.WriteRune(c)
		case c == '+' && i == 0:
		case c == '-' || c == ' ':
		default:
			return "", invalid("customer.phone", "must be E.164 or a Korean 010 number")
		}
	}
	d := digits.String()
	if plus {
		if len(d) < 8 || len(d) > 15 || d[0] == '0' {
			return "", invalid("customer.phone", "must be E.164 or a Korean 010 number")
		}
		return "+" + d, nil
	}
	if strings.HasPrefix(d, "010") && (len(d) == 11 || len(d) == 10) {
		return "+82" + d[1:], nil
	}
	return "", invalid("customer.phone", "must be E.164 or a Korean 010 number")
}

// MaskPhone hides all but the last four digits, for logs and API answers.
func MaskPhone(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return strings.Repeat("*", len(s)-4) + s[len(s)-4:]
}
