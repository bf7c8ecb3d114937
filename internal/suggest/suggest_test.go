package suggest

import "testing"

func TestClosest(t *testing.T) {
	fields := []string{"name", "source", "checksum", "verify_checksum", "match", "governor", "size", "auth"}
	tests := []struct{ word, want string }{
		{"chekcsum", "checksum"},
		{"checksun", "checksum"},
		{"Checksum", "checksum"},
		{"sorce", "source"},
		{"verify_cheksum", "verify_checksum"},
		{"nmae", "name"},
		{"colour", ""},
		{"x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.word, fields); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got := Closest("has_comand", []string{"identity", "has_file", "has_directory", "has_command", "get_fact"}); got != "has_command" {
		t.Errorf("Closest(has_comand) = %q, want has_command", got)
	}
	if got := Hint("typ", []string{"type", "name"}); got != `; did you mean "type"?` {
		t.Errorf("Hint(typ) = %q", got)
	}
	if got := Hint("name", []string{"name"}); got != "" {
		t.Errorf("Hint(exact) = %q, want none", got)
	}
}

func FuzzClosest(f *testing.F) {
	f.Add("chekcsum", "checksum")
	f.Add("", "a")
	f.Fuzz(func(t *testing.T, word, cand string) {
		got := Closest(word, []string{cand})
		if got != "" && got != cand {
			t.Fatalf("Closest(%q, [%q]) = %q, not a candidate", word, cand, got)
		}
		if distance(word, word) != 0 {
			t.Fatalf("distance(%q, itself) != 0", word)
		}
	})
}
