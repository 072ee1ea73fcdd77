package resume

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeRequest feeds the client-message decoder anything: it must
// never panic, must refuse what is not a protocol message with
// ErrNotProtocol, and what it accepts must survive being encoded and
// decoded again unchanged, within the protocol's limits.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","id":1,"topic":"news","since":{"epoch":"9f2c","offset":41}}`,
		`{"type":"subscribe","topic":"a.b"}`,
		`{"type":"unsubscribe","id":2,"topic":"news"}`,
		`{"type":"ping","id":3}`,
		`{"type":"ping"}`,
		`{"type":"chat","text":"hi"}`,
		`{"type":"subscribe","id":"1","topic":"x"}`,
		`{"type":"subscribe","id":1.5,"topic":"x"}`,
		`{"type":"subscribe","topic":"x","since":{"epoch":"e","offset":9007199254740992}}`,
		`{"type":"subscribe","topic":"x","since":null}`,
		`{"type":"subscribe","topic":"x","since":[]}`,
		`{"type":"subscribe","topic":"a b"}`,
		`{"type":7}`,
		`[]`, `null`, `"x"`, `{`, ``, "\xff{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			if errors.Is(err, ErrNotProtocol) && r.Type != "" {
				t.Fatalf("not a protocol message, but typed %q", r.Type)
			}
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		switch r.Type {
		case TypeSubscribe, TypeUnsubscribe, TypePing:
		default:
			t.Fatalf("accepted type %q", r.Type)
		}
		if r.ID > MaxID || r.Since != nil && (r.Since.Offset > MaxID || len(r.Since.Epoch) > MaxEpoch) {
			t.Fatalf("accepted out of range: %+v", r)
		}
		again, err := DecodeRequest(AppendRequest(nil, r))
		if err != nil {
			t.Fatalf("%+v encoded does not decode: %v", r, err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip: %+v became %+v", r, again)
		}
	})
}
