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

// MaskPhone hides a phone number for logs and API answers: it keeps the
// last four digits, enough to tell customers apart and not enough to call
// them, and the separators '+', '-' and ' ', so the number keeps its shape.
// Every other character, any letter included, becomes '*'; a string with at
// most four digits shows none of them. It takes any input (a phone not yet
// validated, a configured one) and never returns invalid UTF-8.
func MaskPhone(s string) string {
	digits := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	keep := 0
	if digits > 4 {
		keep = 4
	}
	out := []rune(s)
	for i := len(out) - 1; i >= 0; i-- {
		switch c := out[i]; {
		case c >= '0' && c <= '9' && keep > 0:
			keep--
		case c == '+' || c == '-' || c == ' ':
		default:
			out[i] = '*'
		}
	}
	return string(out)
}
