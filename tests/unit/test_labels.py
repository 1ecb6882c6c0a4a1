"""parse_label_config and task_text on good, odd and hostile label configs and task data."""

import pytest

from backend.labels import UNDEFINED_KEY, ChoicesBlock, UnsupportedConfigError, parse_label_config, task_text

TEXT = '<Text name="review" value="$text"/>'
TWO = '<Choice value="a"/><Choice value="b"/>'


def config(body: str) -> str:
    return f"<View>{body}</View>"


def choices(inner: str = TWO, name: str = "label", to_name: str = "review", **attrs) -> str:
    extra = "".join(f' {key}="{value}"' for key, value in attrs.items())
    return f'<Choices name="{name}" toName="{to_name}"{extra}>{inner}</Choices>'


def test_parse_label_config_single_block():
    spec = parse_label_config(config(TEXT + choices('<Choice value="Positive / good"/><Choice value="Négatif"/>')))

    assert spec.blocks == (ChoicesBlock("label", "review", "text", ("Positive / good", "Négatif"), False),)
    assert spec.value_keys == ("text",)


def test_parse_label_config_multiple_blocks_and_undefined_key():
    body = ('<Text name="body" value="$undefined$"/>' + choices(name="topic", to_name="body")
            + choices('<Choice value="x"/><Choice value="y"/><Choice value="z"/>', name="tags", to_name="body",
                      choice="multiple"))

    spec = parse_label_config(config(body))

    assert [block.from_name for block in spec.blocks] == ["topic", "tags"]
    assert [block.multiple for block in spec.blocks] == [False, True]
    assert spec.value_keys == (UNDEFINED_KEY,)


def test_parse_label_config_alias_replaces_value():
    spec = parse_label_config(config(TEXT + choices('<Choice value="Good" alias="pos"/><Choice value="Bad"/>')))

    assert spec.blocks[0].choices == ("pos", "Bad")


def test_parse_label_config_unknown_tags_are_ignored():
    spec = parse_label_config(config('<Header value="Read"/><Frobnicate name="x"/>' + TEXT + choices()))

    assert spec.blocks[0].choices == ("a", "b")


def test_parse_label_config_choices_on_non_text_object_are_skipped():
    body = TEXT + '<Image name="img" value="$image"/>' + choices(name="kind", to_name="img") + choices()

    spec = parse_label_config(config(body))

    assert [block.from_name for block in spec.blocks] == ["label"]


@pytest.mark.parametrize("value", ["", "   ", None, 5])
def test_parse_label_config_empty_is_rejected(value):
    with pytest.raises(UnsupportedConfigError, match="label config is empty"):
        parse_label_config(value)


def test_parse_label_config_no_choices_is_rejected():
    with pytest.raises(UnsupportedConfigError, match="no <Choices> control attached to a <Text> object"):
        parse_label_config(config(TEXT))


def test_parse_label_config_no_text_is_rejected():
    with pytest.raises(UnsupportedConfigError, match="no <Choices> control attached to a <Text> object"):
        parse_label_config(config(choices()))


def test_parse_label_config_one_choice_is_rejected():
    with pytest.raises(UnsupportedConfigError, match=r"<Choices name='label'> has 1 choice\(s\)"):
        parse_label_config(config(TEXT + choices('<Choice value="a"/>')))


def test_parse_label_config_duplicate_tag_names_are_rejected():
    with pytest.raises(UnsupportedConfigError, match="two tags named 'review' \\(<Text> and <Text>\\)"):
        parse_label_config(config(TEXT + '<Text name="review" value="$other"/>' + choices()))


def test_parse_label_config_duplicate_choices_names_are_rejected():
    with pytest.raises(UnsupportedConfigError, match="two tags named 'label' \\(<Choices> and <Choices>\\)"):
        parse_label_config(config(TEXT + choices() + choices()))


def test_parse_label_config_control_named_like_object_is_rejected():
    with pytest.raises(UnsupportedConfigError, match="two tags named 'review' \\(<Text> and <Choices>\\)"):
        parse_label_config(config(TEXT + choices(name="review")))


def test_parse_label_config_repeated_choice_value_is_rejected():
    with pytest.raises(UnsupportedConfigError, match=r"<Choices name='label'> lists \['a'\] more than once"):
        parse_label_config(config(TEXT + choices('<Choice value="a"/><Choice value="b"/><Choice value="a"/>')))


def test_parse_label_config_choices_differing_by_case_are_rejected():
    with pytest.raises(UnsupportedConfigError, match=r"differ only by case: \['Yes', 'yes'\]"):
        parse_label_config(config(TEXT + choices('<Choice value="Yes"/><Choice value="yes"/>')))


def test_parse_label_config_url_text_is_rejected():
    with pytest.raises(UnsupportedConfigError, match='valueType="url".*never fetches task URLs'):
        parse_label_config(config('<Text name="review" value="$text" valueType="url"/>' + choices()))


def test_parse_label_config_invalid_xml_is_rejected():
    with pytest.raises(UnsupportedConfigError, match="not valid XML"):
        parse_label_config("<View><Text name='review' value='$text'></View>")


def test_parse_label_config_billion_laughs_is_rejected():
    levels = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    bomb = f'<?xml version="1.0"?><!DOCTYPE v [{"".join(levels)}]>' + config(TEXT + choices(
        '<Choice value="&l9;"/><Choice value="b"/>'))

    with pytest.raises(UnsupportedConfigError, match="DTD or entities.*DTDForbidden"):
        parse_label_config(bomb)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "http://127.0.0.1:9/x.dtd"])
def test_parse_label_config_external_entity_is_rejected(target):
    xxe = f'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "{target}">]>' + config(TEXT + choices(
        '<Choice value="&x;"/><Choice value="b"/>'))

    with pytest.raises(UnsupportedConfigError, match="DTD or entities"):
        parse_label_config(xxe)


def test_parse_label_config_doctype_without_entities_is_rejected():
    with pytest.raises(UnsupportedConfigError, match="remove the <!DOCTYPE>"):
        parse_label_config("<!DOCTYPE View>" + config(TEXT + choices()))


@pytest.mark.parametrize("data, key, expected", [
    ({"text": "hello"}, "text", "hello"),
    ({"text": "  padded  "}, "text", "  padded  "),
    ({"text": "e\u0301 😀 中文"}, "text", "e\u0301 😀 中文"),
    ({UNDEFINED_KEY: "plain"}, UNDEFINED_KEY, "plain"),
    ({"only": "single key"}, UNDEFINED_KEY, "single key"),
], ids=["plain", "padded", "mixed_scripts", "undefined_key", "single_key_import"])
def test_task_text_usable(data, key, expected):
    assert task_text(data, key) == expected


@pytest.mark.parametrize("data, key", [
    ({}, "text"), ({"text": None}, "text"), ({"text": 3}, "text"), ({"text": ["a"]}, "text"),
    ({"text": {"a": 1}}, "text"), ({"text": ""}, "text"), ({"text": " \t\n\u3000"}, "text"),
    ({"a": "x", "b": "y"}, UNDEFINED_KEY), ({"only": 5}, UNDEFINED_KEY), ("text", "text"), (None, "text"),
    (["text"], "text"),
], ids=["missing", "null", "number", "list", "object", "empty", "whitespace", "two_keys_undefined",
        "single_non_string", "data_string", "data_null", "data_list"])
def test_task_text_unusable_is_none(data, key):
    assert task_text(data, key) is None
