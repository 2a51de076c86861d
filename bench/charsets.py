"""Charset detectors on feeds whose legacy encoding is not declared: which one gets them right?

Run:  .venv/bin/python bench/charsets.py

feedparser falls back to chardet (when installed) for bytes that are neither the declared
encoding nor UTF-8; charset-normalizer offers the same kind of guess. This measures both on
realistic feeds - Russian (KOI8-R, windows-1251), Japanese (Shift-JIS, EUC-JP), Chinese (GB2312),
French/German/Polish (windows-1252, ISO-8859-1, ISO-8859-2) - in three shapes: one short title,
five items, and a mostly-ASCII feed (twenty English items, one foreign title: the common case
that drowns the signal in markup). Each detector is fed the whole document and, as
``stages.feeds.documents.detect`` does, only its runs of non-ASCII bytes. A guess counts as right
when the document decodes to exactly its text with it. Needs both libraries installed (chardet is
pinned; ``pip install charset-normalizer`` to compare).
"""

from __future__ import annotations

import re
import time

RU = ["Центробанк сохранил ключевую ставку на прежнем уровне", "В Москве открылась выставка роботов",
      "Учёные создали новый аккумулятор для электромобилей", "Сборная выиграла товарищеский матч",
      "Погода на выходные: снег и мороз до минус двадцати"]  # fmt: skip
JA = ["日銀が金融政策の現状維持を決定", "東京で人工知能とロボットの展示会が開幕", "新しい電池で電気自動車の航続距離が倍増",
      "台風十号が九州に接近、警戒を呼びかけ", "スマートフォンの新機種に独自開発の半導体"]  # fmt: skip
ZH = ["央行宣布维持基准利率不变", "北京举办人工智能与机器人展览会", "科学家研制出新型电动汽车电池",
      "台风逼近东南沿海地区发布预警", "新款手机搭载自主研发芯片"]  # fmt: skip
FR = ["Le café de la gare ferme ses portes après 80 ans", "Élection: les résultats définitifs publiés à l’aube",
      "Grève des contrôleurs aériens: trafic perturbé jeudi", "Où trouver les meilleures crêpes de Bretagne ?",
      "Météo : épisode cévenol, vigilance orange"]  # fmt: skip
DE = ["Bahn erhöht die Preise für Fernzüge", "Größte Solaranlage Europas geht ans Netz", "Bürgermeister kündigt Rücktritt an",
      "Schüler gewinnen Preis für Klimaprojekt", "Straßenbahn fährt wieder nach Plan"]  # fmt: skip
PL = ["Rząd przyjął projekt budżetu na przyszły rok", "Żużel: zwycięstwo gospodarzy w Zielonej Górze",
      "Łódź otwiera nową linię tramwajową", "Wzrost cen energii zaskoczył ekonomistów",
      "Ścieżki rowerowe wydłużone o dwadzieścia kilometrów"]  # fmt: skip
CASES = [("koi8-r", RU), ("windows-1251", RU), ("shift_jis", JA), ("euc-jp", JA), ("gb2312", ZH),
         ("windows-1252", FR), ("iso-8859-1", DE), ("iso-8859-2", PL)]  # fmt: skip
_NON_ASCII_RUN = re.compile(rb"[\x80-\xff](?:[^<>&]*[\x80-\xff])?")


def feed(titles: list[str], n: int) -> str:
    sep = "。" if titles in (JA, ZH) else ". "
    items = "".join(
        f"<item><title>{t}</title><link>http://x.example/{i}</link><description>{t}{sep}{titles[(i + 1) % len(titles)]}"
        "</description></item>"
        for i, t in enumerate(titles[:n])
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>{items}</channel></rss>'


def mostly_ascii(titles: list[str]) -> str:
    body = "".join(
        f"<item><title>Daily update number {i} from the newsroom</title><link>http://x.example/{i}</link>"
        f"<description>{'Lorem ipsum dolor sit amet ' * 20}</description></item>"
        for i in range(20)
    )
    body += f"<item><title>{titles[0]}</title><link>http://x.example/z</link></item>"
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>{body}</channel></rss>'


def dense(data: bytes) -> bytes:
    return b" ".join(_NON_ASCII_RUN.findall(data))[:65536] or data[:65536]


def main() -> None:
    import chardet

    detectors = {f"chardet {chardet.__version__}": lambda b: chardet.detect(b)["encoding"]}
    try:
        import charset_normalizer

        def normalizer(data: bytes) -> str | None:
            best = charset_normalizer.from_bytes(data).best()
            return best.encoding if best else None

        detectors[f"charset-normalizer {charset_normalizer.__version__}"] = normalizer
    except ImportError:
        print("charset-normalizer is not installed: measuring chardet only")
    docs = [
        (enc, shape, text)
        for enc, titles in CASES
        for shape, text in (
            ("1 title", feed(titles, 1)),
            ("5 items", feed(titles, 5)),
            ("mostly ASCII", mostly_ascii(titles)),
        )
    ]
    print(f"{len(docs)} documents: {len(CASES)} encodings x (1 title, 5 items, mostly ASCII)\n")
    for name, detect in detectors.items():
        for feed_what, prepare in (("whole document", lambda b: b), ("non-ASCII runs", dense)):
            right, wrong, spent = 0, [], 0.0
            for enc, shape, text in docs:
                data = text.encode(enc)
                started = time.perf_counter()
                guess = detect(prepare(data))
                spent += time.perf_counter() - started
                try:
                    ok = guess is not None and data.decode(guess) == text
                except (LookupError, UnicodeDecodeError):
                    ok = False
                if ok:
                    right += 1
                else:
                    wrong.append(f"{enc}/{shape} -> {guess}")
            print(
                f"{name:28} fed the {feed_what:15} {right:2}/{len(docs)} right, {spent * 1000 / len(docs):5.1f} ms each"
            )
            for miss in wrong:
                print(f"    wrong: {miss}")


if __name__ == "__main__":
    main()
