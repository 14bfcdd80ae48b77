"""The words of "why it ranked here" (a card) and of the turn's confidence (its header)."""

from __future__ import annotations

from html import escape

from rlhf_desktop.services.model_words import driver_text, signed
from rlhf_desktop.services.rewards import ScoreParts, TurnExplanation

UNSURE_COLOR = "#d29922"


def card_why(part: ScoreParts, position: int, n: int, explained_by: int | None,
             ranked_by: int | None) -> str:
    """A card's explanation as rich text: the score split into style and content, the
    same parts against the turn's average (what orders the cards), and the style drivers."""
    lines = [
        f"<b>#{position + 1} of {n}</b> · score {signed(part.score)} = "
        f"style {signed(part.style)} + content {signed(part.content)}",
        f"Against this turn's average: style <b>{signed(part.style_vs_mean)}</b> · "
        f"content <b>{signed(part.content_vs_mean)}</b>",
    ]
    if part.drivers:
        lines.append("Style: " + " · ".join(escape(driver_text(name, logit))
                                            for name, logit in part.drivers))
    else:
        lines.append("Style: no feature stands out against the other replies")
    lines.append(f"<i>{main_reason(part)}</i>")
    if explained_by != ranked_by and ranked_by is not None:
        lines.append(f"(explained by model v{explained_by}, the one in use; ranked by "
                     f"v{ranked_by})")
    return "<br>".join(lines)


def main_reason(part: ScoreParts) -> str:
    """Which part moved this reply more, in one sentence."""
    style, content = part.style_vs_mean, part.content_vs_mean
    if abs(style) < 0.01 and abs(content) < 0.01:
        return "It scores about the same as the others."
    bigger = "its form (style)" if abs(style) >= abs(content) else "what it says (content)"
    way = "up" if (style if abs(style) >= abs(content) else content) > 0 else "down"
    return f"Mostly {bigger} moved it {way}."


def confidence_text(why: TurnExplanation) -> tuple[str, str]:
    """(badge text, tooltip) for the turn header."""
    if why.p_top is None:
        return "", ""
    pct = f"{why.p_top * 100:.0f} %"
    tip = (f"Reward model v{why.version}: P(#1 is better than #2) = {pct}, calibrated on "
           f"your labels. Below {why.unsure_below * 100:.0f} % the ranking is unsure, and "
           f"your pick teaches the model most. ({why.metric})")
    if why.unsure:
        return f"unsure · #1 beats #2: {pct}", tip
    return f"#1 beats #2: {pct}", tip
