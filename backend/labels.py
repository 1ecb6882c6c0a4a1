"""Parse Label Studio label configs into the choice blocks this backend can serve."""

from dataclasses import dataclass

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException
from label_studio_sdk.label_interface import LabelInterface

UNDEFINED_KEY = "$undefined$"


class UnsupportedConfigError(ValueError):
    """The label config cannot be served by this backend; the message says why and what to change."""


@dataclass(frozen=True)
class ChoicesBlock:
    """One `<Choices>` control attached to a `<Text>` object.

    Attributes
    ----------
    from_name : str
        The `name` of the `<Choices>` tag, written as `from_name` in results.
    to_name : str
        The `name` of the `<Text>` tag it labels.
    value_key : str
        The task data key the text is read from (`$text` gives `text`; plain-text
        imports give `$undefined$`).
    choices : tuple of str
        The choice values, byte-exact, in config order.
    multiple : bool
        True for `choice="multiple"`.
    """

    from_name: str
    to_name: str
    value_key: str
    choices: tuple[str, ...]
    multiple: bool


@dataclass(frozen=True)
class LabelSpec:
    """The servable part of a label config: one or more choice blocks."""

    blocks: tuple[ChoicesBlock, ...]

    @property
    def value_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(block.value_key for block in self.blocks))


def parse_label_config(config: str) -> LabelSpec:
    """Parse a label config and return its `<Choices>`-on-`<Text>` blocks.

    Raises
    ------
    UnsupportedConfigError
        If the XML is invalid or declares a DTD or entities, two tags share a name, a `<Choices>`
        repeats a value, a `<Text>` reads a URL (``valueType="url"``), or no `<Choices>` control
        labels a `<Text>` object.
    """
    if not isinstance(config, str) or not config.strip():
        raise UnsupportedConfigError(
            "label config is empty; send the project's XML label config with a <Text> "
            "object and a <Choices> control"
        )
    _check_tags(_check_xml(config))
    try:
        interface = LabelInterface(config)
    except Exception as exc:  # the SDK raises several unrelated types on bad configs
        raise UnsupportedConfigError(f"label config could not be parsed: {exc}") from exc

    texts = {obj.name: obj for obj in interface.objects if obj.tag == "Text"}
    blocks = []
    for control in interface.controls:
        if control.tag != "Choices":
            continue
        targets = [name for name in control.to_name if name in texts]
        if not targets:
            continue
        text = texts[targets[0]]
        if str(text.attr.get("valueType", "text")).lower() == "url":
            raise UnsupportedConfigError(
                f"<Text name={text.name!r}> has valueType=\"url\": the task data would be a link, and this "
                "backend never fetches task URLs; import the text itself and remove valueType=\"url\""
            )
        choices = tuple(control.labels)
        if len(choices) < 2:
            raise UnsupportedConfigError(
                f"<Choices name={control.name!r}> has {len(choices)} choice(s); add at least two <Choice> values"
            )
        folded = [choice.casefold() for choice in choices]
        if len(set(folded)) != len(folded):
            raise UnsupportedConfigError(
                f"<Choices name={control.name!r}> has choices that differ only by case: {list(choices)}; "
                "rename them so the teacher's answers can be told apart"
            )
        blocks.append(
            ChoicesBlock(
                from_name=control.name,
                to_name=text.name,
                value_key=_value_key(text.value),
                choices=choices,
                multiple=control.attr.get("choice", "single") == "multiple",
            )
        )
    if not blocks:
        raise UnsupportedConfigError(
            "label config has no <Choices> control attached to a <Text> object; this backend "
            "classifies text, so add e.g. <Text name=\"text\" value=\"$text\"/> and "
            "<Choices name=\"label\" toName=\"text\"> with two or more <Choice> values"
        )
    return LabelSpec(blocks=tuple(blocks))


def _check_xml(config: str):
    """Parse `config` with DTDs and entities forbidden and return the root element."""
    try:
        return SafeElementTree.fromstring(config, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise UnsupportedConfigError(
            f"label config uses a DTD or entities, which are rejected for safety ({type(exc).__name__}); "
            "remove the <!DOCTYPE> and entity declarations"
        ) from exc
    except SafeElementTree.ParseError as exc:
        raise UnsupportedConfigError(f"label config is not valid XML: {exc}; fix the XML") from exc


def _check_tags(root) -> None:
    """Reject duplicate tag names and duplicate <Choice> values, which the SDK would merge silently."""
    seen: dict[str, str] = {}
    for element in root.iter():
        name = element.get("name")
        if name is None:
            continue
        if name in seen:
            raise UnsupportedConfigError(
                f"label config has two tags named {name!r} (<{seen[name]}> and <{element.tag}>); "
                "give each tag a unique name"
            )
        seen[name] = element.tag
    for choices in root.iter("Choices"):
        values = [choice.get("alias") or choice.get("value") for choice in choices.iter("Choice")]
        repeated = sorted({value for value in values if values.count(value) > 1 and value is not None})
        if repeated:
            raise UnsupportedConfigError(
                f"<Choices name={choices.get('name')!r}> lists {repeated} more than once; "
                "keep one <Choice> per value"
            )


def _value_key(value: str) -> str:
    if value.startswith("$"):
        return value[1:] if value != UNDEFINED_KEY else UNDEFINED_KEY
    return value


def task_text(data: object, key: str) -> str | None:
    """Return the text stored under `key` in a task's data, or None when it is missing or unusable.

    Missing, empty, whitespace-only and non-string values return None, so they are never
    sent to the teacher or used for training.
    """
    if not isinstance(data, dict):
        return None
    value = data.get(key)
    if value is None and key == UNDEFINED_KEY and len(data) == 1:
        value = next(iter(data.values()))
    if not isinstance(value, str) or not value.strip():
        return None
    return value
