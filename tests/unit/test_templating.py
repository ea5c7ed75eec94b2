"""The placeholder renderer: structural JSON, encoded URLs, safe header values."""

from __future__ import annotations

import pytest

from sidecar.templating import PlaceholderRenderer
from tools.base import Binding, InvalidArguments, JsonValue, Renderer, Secret

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def renderer() -> Renderer:
    return PlaceholderRenderer()


BINDINGS = {
    "n": Binding(42),
    "f": Binding(1.5),
    "yes": Binding(True),
    "nothing": Binding(None),
    "obj": Binding({"a": [1, "x"], "b": None}),
    "word": Binding("hello"),
    "tricky": Binding("a/b?c=d&e"),
    "token": Binding(Secret(TOKEN)),
    "model_host": Binding("evil.example", from_model=True),
    "var_host": Binding("api.example.com"),
    "base": Binding("https://api.example.com:8443"),
    "model_base": Binding("https://evil.example", from_model=True),
}


class TestJson:
    def test_a_lone_placeholder_keeps_the_json_type(self, renderer: Renderer) -> None:
        template: JsonValue = {
            "n": "{{n}}",
            "f": "{{ f }}",
            "b": "{{yes}}",
            "o": "{{obj}}",
            "z": "{{nothing}}",
        }
        rendered = renderer.json(template, BINDINGS)
        assert rendered.value == {
            "n": 42,
            "f": 1.5,
            "b": True,
            "o": {"a": [1, "x"], "b": None},
            "z": None,
        }
        assert rendered.used_secret is False

    def test_a_placeholder_inside_a_longer_string_becomes_text(self, renderer: Renderer) -> None:
        template: JsonValue = ["n={{n}}", "{{yes}}/{{nothing}}", "o: {{obj}}", "{{word}} world"]
        rendered = renderer.json(template, BINDINGS)
        assert rendered.value == ["n=42", "true/null", 'o: {"a":[1,"x"],"b":null}', "hello world"]

    def test_placeholders_in_keys_render_as_text(self, renderer: Renderer) -> None:
        rendered = renderer.json({"{{word}}": 1, "k_{{n}}": {"{{yes}}": "{{n}}"}}, BINDINGS)
        assert rendered.value == {"hello": 1, "k_42": {"true": 42}}

    def test_text_with_json_syntax_is_never_parsed(self, renderer: Renderer) -> None:
        bindings = {"v": Binding('", "admin": true, "x": "')}
        rendered = renderer.json({"name": "{{v}}", "note": "is {{v}}"}, bindings)
        assert rendered.value == {
            "name": '", "admin": true, "x": "',
            "note": 'is ", "admin": true, "x": "',
        }

    def test_a_secret_is_revealed_in_the_output_and_flagged(self, renderer: Renderer) -> None:
        rendered = renderer.json({"auth": "{{token}}", "h": "Bearer {{token}}"}, BINDINGS)
        assert rendered.value == {"auth": TOKEN, "h": f"Bearer {TOKEN}"}
        assert rendered.used_secret is True
        assert TOKEN not in repr(BINDINGS)

    def test_non_string_scalars_pass_through(self, renderer: Renderer) -> None:
        assert renderer.json([1, 2.5, False, None], {}).value == [1, 2.5, False, None]

    def test_a_missing_placeholder_is_an_error_naming_it(self, renderer: Renderer) -> None:
        with pytest.raises(InvalidArguments, match=r"'\{\{city\}\}'") as caught:
            renderer.json({"q": "weather in {{ city }}"}, BINDINGS)
        assert caught.value.param == "city"

    def test_keys_that_collide_after_rendering_are_refused(self, renderer: Renderer) -> None:
        with pytest.raises(InvalidArguments, match="same key"):
            renderer.json({"{{word}}": 1, "hello": 2}, BINDINGS)

    def test_the_rendered_value_is_a_copy(self, renderer: Renderer) -> None:
        rendered = renderer.json("{{obj}}", BINDINGS)
        assert isinstance(rendered.value, dict)
        rendered.value["a"] = "changed"
        assert BINDINGS["obj"].value == {"a": [1, "x"], "b": None}

    def test_braces_that_are_no_placeholder_stay_literal(self, renderer: Renderer) -> None:
        assert renderer.json("{{ 1x }} {x}", {}).value == "{{ 1x }} {x}"


class TestHeader:
    def test_renders_text(self, renderer: Renderer) -> None:
        rendered = renderer.header("Bearer {{token}}; n={{n}}", BINDINGS)
        assert rendered.value == f"Bearer {TOKEN}; n=42"
        assert rendered.used_secret is True

    @pytest.mark.parametrize("bad", ["x\r\nSet-Cookie: a=b", "x\ny", "x\ry", "x\x00y"])
    def test_line_breaks_and_nul_are_refused(self, renderer: Renderer, bad: str) -> None:
        with pytest.raises(InvalidArguments, match="header value") as caught:
            renderer.header("v={{v}}", {"v": Binding(bad)})
        assert bad not in caught.value.message
        assert caught.value.param == "v"

    def test_a_secret_with_a_line_break_is_not_shown(self, renderer: Renderer) -> None:
        with pytest.raises(InvalidArguments) as caught:
            renderer.header("{{t}}", {"t": Binding(Secret("abc\ndef"))})
        assert "abc" not in caught.value.message

    def test_missing_placeholder(self, renderer: Renderer) -> None:
        with pytest.raises(InvalidArguments, match=r"'\{\{api_key\}\}'"):
            renderer.header("Bearer {{api_key}}", {})


class TestUrl:
    def test_values_are_encoded_for_path_query_and_fragment(self, renderer: Renderer) -> None:
        rendered = renderer.url(
            "https://api.example.com/v1/{{tricky}}/x?q={{tricky}}&{{tricky}}=1#{{tricky}}",
            BINDINGS,
        )
        enc = "a%2Fb%3Fc%3Dd%26e"
        assert rendered.url == f"https://api.example.com/v1/{enc}/x?q={enc}&{enc}=1#{enc}"
        assert rendered.host_from_model is False
        assert rendered.used_secret is False

    def test_non_string_values_become_text(self, renderer: Renderer) -> None:
        rendered = renderer.url("https://h.example/{{n}}?b={{yes}}&f={{f}}", BINDINGS)
        assert rendered.url == "https://h.example/42?b=true&f=1.5"

    def test_a_secret_in_the_query_is_flagged(self, renderer: Renderer) -> None:
        rendered = renderer.url("https://h.example/x?key={{token}}", BINDINGS)
        assert rendered.url == f"https://h.example/x?key={TOKEN}"
        assert rendered.used_secret is True

    def test_a_model_chosen_host_is_reported(self, renderer: Renderer) -> None:
        rendered = renderer.url("https://{{model_host}}/x", BINDINGS)
        assert rendered.url == "https://evil.example/x"
        assert rendered.host_from_model is True

    def test_a_variable_host_is_not_from_the_model(self, renderer: Renderer) -> None:
        rendered = renderer.url("https://{{var_host}}:8080/x/{{word}}", BINDINGS)
        assert rendered.url == "https://api.example.com:8080/x/hello"
        assert rendered.host_from_model is False

    def test_a_model_value_in_the_path_does_not_choose_the_host(self, renderer: Renderer) -> None:
        bindings = {**BINDINGS, "p": Binding("x", from_model=True)}
        assert renderer.url("https://h.example/{{p}}", bindings).host_from_model is False

    @pytest.mark.parametrize(
        "host", ["evil.example/x", "a@evil.example", "h?x", "h#x", "h x", "", "h:99999", "h:ab"]
    )
    def test_a_bad_host_is_refused(self, renderer: Renderer, host: str) -> None:
        with pytest.raises(InvalidArguments):
            renderer.url("https://{{h}}/x", {"h": Binding(host)})

    def test_ip_hosts_are_accepted(self, renderer: Renderer) -> None:
        assert renderer.url("http://{{h}}:8080/", {"h": Binding("127.0.0.1")}).url == (
            "http://127.0.0.1:8080/"
        )
        assert renderer.url("http://{{h}}/", {"h": Binding("[::1]")}).url == "http://[::1]/"

    def test_a_base_url_placeholder_fills_scheme_and_authority(self, renderer: Renderer) -> None:
        rendered = renderer.url("{{base}}/v1/{{tricky}}", BINDINGS)
        assert rendered.url == "https://api.example.com:8443/v1/a%2Fb%3Fc%3Dd%26e"
        assert rendered.host_from_model is False

    def test_a_base_url_from_the_model_is_reported(self, renderer: Renderer) -> None:
        assert renderer.url("{{model_base}}/x", BINDINGS).host_from_model is True

    def test_a_trailing_slash_on_a_base_url_is_dropped(self, renderer: Renderer) -> None:
        rendered = renderer.url("{{b}}/x", {"b": Binding("http://h.example/")})
        assert rendered.url == "http://h.example/x"

    @pytest.mark.parametrize(
        "base",
        [
            "https://h.example/path",
            "ftp://h.example",
            "h.example",
            "https://u@h.example",
            "https://",
        ],
    )
    def test_a_base_url_with_anything_else_is_refused(self, renderer: Renderer, base: str) -> None:
        with pytest.raises(InvalidArguments):
            renderer.url("{{b}}/x", {"b": Binding(base)})

    @pytest.mark.parametrize("template", ["ftp://h.example/x", "/relative/{{word}}", "h.example/x"])
    def test_only_absolute_http_urls(self, renderer: Renderer, template: str) -> None:
        with pytest.raises(InvalidArguments):
            renderer.url(template, BINDINGS)

    def test_a_secret_in_userinfo_is_encoded_and_not_the_host(self, renderer: Renderer) -> None:
        bindings = {"pw": Binding(Secret("p@ss/w"), from_model=True)}
        rendered = renderer.url("https://user:{{pw}}@h.example/", bindings)
        assert rendered.url == "https://user:p%40ss%2Fw@h.example/"
        assert rendered.used_secret is True
        assert rendered.host_from_model is False

    def test_missing_placeholder_names_it(self, renderer: Renderer) -> None:
        with pytest.raises(InvalidArguments, match=r"'\{\{id\}\}'") as caught:
            renderer.url("https://h.example/items/{{id}}", BINDINGS)
        assert caught.value.param == "id"

    def test_a_url_in_the_query_does_not_confuse_the_split(self, renderer: Renderer) -> None:
        rendered = renderer.url("{{base}}?next=http://x/{{word}}", BINDINGS)
        assert rendered.url == "https://api.example.com:8443?next=http://x/hello"
