package downstream_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessiond/sessiond/client"
	"github.com/sessiond/sessiond/client/clienttest"

	"example.com/downstream"
)

func TestHello(t *testing.T) {
	d := clienttest.Start(t) // stopped when the test ends
	srv := httptest.NewServer(downstream.NewHandler(client.New(d.Conn())))
	t.Cleanup(srv.Close)

	get := func(token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/hello", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	token, _ := d.CreateSession(t, "user-42")
	if code, body := get(token); code != http.StatusOK || body != "hello, user-42" {
		t.Fatalf("with a live session: %d %q, want 200 hello, user-42", code, body)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	d.Revoke(t, token)
	if code, _ := get(token); code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", code)
	}

	other, _ := d.CreateSession(t, "user-42")
	if n := d.RevokeUser(t, "user-42"); n != 1 {
		t.Fatalf("RevokeUser = %d, want 1", n)
	}
	if code, _ := get(other); code != http.StatusUnauthorized {
		t.Fatalf("after logout everywhere: %d, want 401", code)
	}

	live, _ := d.CreateSession(t, "user-7")
	d.Stop()
	if code, _ := get(live); code != http.StatusServiceUnavailable {
		t.Fatalf("with sessiond down: %d, want 503", code)
	}
}
