"""Computed demo families for make_demo_data.py: fact tables, question | answer templates and value makers.

Each family (arith, units, spelling, calendar, capital, antonym, translate, parity, compare) draws values with
the shared `r` and returns the fields its templates use; `make(family, lang)` fills one template pair. Answers
are computed, never typed, so they are right by construction and the generator re-checks the arithmetic.
The English and Chinese makers draw the same values in the same order, so replaying `r`'s state gives the same
question in the other language (demo_prefs.py uses that for replies in the wrong language).
"""

import random
import re

r = random.Random(0)

CAPITALS = """
France | 法国 | Paris | 巴黎 | Europe | 欧洲
Germany | 德国 | Berlin | 柏林 | Europe | 欧洲
Italy | 意大利 | Rome | 罗马 | Europe | 欧洲
Spain | 西班牙 | Madrid | 马德里 | Europe | 欧洲
Greece | 希腊 | Athens | 雅典 | Europe | 欧洲
Portugal | 葡萄牙 | Lisbon | 里斯本 | Europe | 欧洲
Norway | 挪威 | Oslo | 奥斯陆 | Europe | 欧洲
Sweden | 瑞典 | Stockholm | 斯德哥尔摩 | Europe | 欧洲
Finland | 芬兰 | Helsinki | 赫尔辛基 | Europe | 欧洲
Denmark | 丹麦 | Copenhagen | 哥本哈根 | Europe | 欧洲
Poland | 波兰 | Warsaw | 华沙 | Europe | 欧洲
Austria | 奥地利 | Vienna | 维也纳 | Europe | 欧洲
Ireland | 爱尔兰 | Dublin | 都柏林 | Europe | 欧洲
Japan | 日本 | Tokyo | 东京 | Asia | 亚洲
China | 中国 | Beijing | 北京 | Asia | 亚洲
India | 印度 | New Delhi | 新德里 | Asia | 亚洲
South Korea | 韩国 | Seoul | 首尔 | Asia | 亚洲
Thailand | 泰国 | Bangkok | 曼谷 | Asia | 亚洲
Vietnam | 越南 | Hanoi | 河内 | Asia | 亚洲
Egypt | 埃及 | Cairo | 开罗 | Africa | 非洲
Kenya | 肯尼亚 | Nairobi | 内罗毕 | Africa | 非洲
Canada | 加拿大 | Ottawa | 渥太华 | North America | 北美洲
Mexico | 墨西哥 | Mexico City | 墨西哥城 | North America | 北美洲
Brazil | 巴西 | Brasília | 巴西利亚 | South America | 南美洲
Argentina | 阿根廷 | Buenos Aires | 布宜诺斯艾利斯 | South America | 南美洲
Peru | 秘鲁 | Lima | 利马 | South America | 南美洲
Australia | 澳大利亚 | Canberra | 堪培拉 | Oceania | 大洋洲
"""
ANTONYMS_EN = """hot cold | big small | up down | open closed | happy sad | fast slow | light dark | early late
| full empty | strong weak | rich poor | young old | wet dry | hard soft | high low | long short | thick thin
| win lose | buy sell | push pull | true false | inside outside | love hate | above below | remember forget
| question answer | friend enemy"""
ANTONYMS_ZH = """大 小 | 多 少 | 长 短 | 快 慢 | 冷 热 | 黑 白 | 上 下 | 左 右 | 前 后 | 胖 瘦 | 新 旧 | 早 晚 | 远 近
| 真 假 | 买 卖 | 轻 重 | 哭 笑 | 进 出 | 深 浅 | 宽 窄 | 强 弱 | 喜欢 讨厌 | 安全 危险 | 成功 失败 | 容易 困难
| 开始 结束 | 干净 肮脏"""
WORDS = """apple 苹果 | water 水 | book 书 | cat 猫 | dog 狗 | sun 太阳 | moon 月亮 | tree 树 | friend 朋友
| teacher 老师 | school 学校 | car 汽车 | mountain 山 | flower 花 | bird 鸟 | fish 鱼 | milk 牛奶 | tea 茶
| bread 面包 | egg 鸡蛋 | rain 雨 | snow 雪 | door 门 | chair 椅子 | eye 眼睛 | horse 马 | city 城市 | red 红色
| green 绿色 | computer 电脑 | student 学生 | doctor 医生 | music 音乐 | window 窗户 | hello 你好"""
SPELL = """banana apple strawberry letter coffee balloon committee pepper bookkeeper cherry butter tomato potato
elephant giraffe teacher summer window garden yellow success address little puzzle rabbit dinner kitten bottle
planet river music orange pencil school monkey guitar silver winter rocket""".split()
DAYS = {
    "en": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "zh": "星期一 星期二 星期三 星期四 星期五 星期六 星期日".split(),
}
MONTHS = {
    "en": "January February March April May June July August September October November December".split(),
    "zh": "一月 二月 三月 四月 五月 六月 七月 八月 九月 十月 十一月 十二月".split(),
}
OP_WORDS = {"en": {"+": "plus", "-": "minus", "×": "times"}, "zh": {"+": "加", "-": "减", "×": "乘以"}}
UNITS = [  # en from, en to, zh from, zh to, factor, values asked about
    ("kilometer", "meter", "千米", "米", 1000, range(1, 21)),
    ("meter", "kilometer", "米", "千米", 1 / 1000, range(500, 10001, 100)),
    ("kilogram", "gram", "千克", "克", 1000, range(1, 21)),
    ("gram", "kilogram", "克", "千克", 1 / 1000, range(500, 10001, 100)),
    ("hour", "minute", "小时", "分钟", 60, range(1, 13)),
    ("minute", "hour", "分钟", "小时", 1 / 60, range(30, 601, 30)),
    ("minute", "second", "分钟", "秒", 60, range(1, 31)),
]

TEMPLATES = {
    "arith.en": """
What is {a} {op} {b}? | {a} {op} {b} = {c}.
Calculate {a} {op} {b}. | {a} {op} {b} = {c}.
What's {a} {w} {b}? | {a} {op} {b} = {c}.
Compute {a} {op} {b}. | {a} {op} {b} = {c}.
How much is {a} {w} {b}? | {a} {op} {b} = {c}.
Can you work out {a} {op} {b}? | {a} {op} {b} = {c}.""",
    "arith.zh": """
{a} {op} {b} 等于多少？ | {a} {op} {b} = {c}。
请计算 {a} {op} {b}。 | {a} {op} {b} = {c}。
{a} {w} {b} 是多少？ | {a} {op} {b} = {c}。
算一下 {a} {op} {b}。 | {a} {op} {b} = {c}。
{a} {w} {b} 等于几？ | {a} {op} {b} = {c}。
帮我算算 {a} {op} {b}。 | {a} {op} {b} = {c}。""",
    "units.en": """
How many {t} are in {x} {f}? | {x} {f} = {y} {t}.
Convert {x} {f} to {t}. | {x} {f} = {y} {t}.
What is {x} {f} in {t}? | {x} {f} is {y} {t}.
{x} {f} equals how many {t}? | {x} {f} equals {y} {t}.
Please change {x} {f} into {t}. | {x} {f} = {y} {t}.""",
    "units.zh": """
{x} {f}等于多少{t}？ | {x} {f}等于 {y} {t}。
把 {x} {f}换算成{t}。 | {x} {f}等于 {y} {t}。
{x} {f}是多少{t}？ | {x} {f}是 {y} {t}。
{x} {f}合多少{t}？ | {x} {f}合 {y} {t}。
请将 {x} {f}转换为{t}。 | {x} {f}等于 {y} {t}。""",
    "spelling.en": """
How many times does the letter '{c}' appear in '{w}'? | The letter '{c}' appears {n} {times} in '{w}'.
Count the letter '{c}' in the word '{w}'. | The word '{w}' has {n} '{c}'.
How often does '{c}' occur in '{w}'? | '{c}' occurs {n} {times} in '{w}'.
Reverse the word '{w}'. | '{w}' reversed is '{r}'.
Spell '{w}' backwards. | '{w}' backwards is '{r}'.
What is '{w}' written backwards? | '{w}' written backwards is '{r}'.
How many letters are in '{w}'? | '{w}' has {l} letters.
How long is the word '{w}'? | The word '{w}' has {l} letters.""",
    "spelling.zh": """
单词“{w}”里有几个字母 {c}？ | “{w}”里有 {n} 个字母 {c}。
数一数“{w}”中字母 {c} 出现了几次。 | 字母 {c} 在“{w}”中出现了 {n} 次。
字母 {c} 在“{w}”里出现几次？ | 字母 {c} 在“{w}”中出现了 {n} 次。
把单词“{w}”倒过来拼写。 | “{w}”倒过来是“{r}”。
“{w}”倒着写是什么？ | “{w}”倒着写是“{r}”。
请把“{w}”的字母顺序反过来。 | “{w}”反过来是“{r}”。
单词“{w}”有几个字母？ | “{w}”有 {l} 个字母。
“{w}”这个单词由多少个字母组成？ | “{w}”由 {l} 个字母组成。""",
    "calendar.en": """
What day comes after {d}? | The day after {d} is {nd}.
If today is {d}, what day is tomorrow? | Tomorrow is {nd}.
What day comes before {d}? | The day before {d} is {pd}.
If today is {d}, what day was yesterday? | Yesterday was {pd}.
What day is it {k} days after {d}? | {k} days after {d} is {kd}.
Which month comes after {m}? | The month after {m} is {nm}.
Which month comes before {m}? | The month before {m} is {pm}.
What is the {o} month of the year? | The {o} month of the year is {m}.
Which month is month number {n}? | Month number {n} is {m}.""",
    "calendar.zh": """
{d}的后一天是星期几？ | {d}的后一天是{nd}。
如果今天是{d}，明天是星期几？ | 明天是{nd}。
{d}的前一天是星期几？ | {d}的前一天是{pd}。
如果今天是{d}，昨天是星期几？ | 昨天是{pd}。
{d}过 {k} 天是星期几？ | {d}过 {k} 天是{kd}。
{m}的下一个月是几月？ | {m}的下一个月是{nm}。
{m}的上一个月是几月？ | {m}的上一个月是{pm}。
一年中的第 {n} 个月是几月？ | 一年中的第 {n} 个月是{m}。""",
    "capital.en": """
What is the capital of {c}? | The capital of {c} is {k}.
What's the capital city of {c}? | The capital of {c} is {k}.
Which city is the capital of {c}? | {k} is the capital of {c}.
Name the capital of {c}. | The capital of {c} is {k}.
Tell me the capital of {c}. | The capital of {c} is {k}.""",
    "capital.zh": """
{c}的首都是哪里？ | {c}的首都是{k}。
{c}的首都是哪座城市？ | {c}的首都是{k}。
请问{c}的首都在哪？ | {c}的首都是{k}。
哪座城市是{c}的首都？ | {k}是{c}的首都。
说出{c}的首都。 | {c}的首都是{k}。""",
    "antonym.en": """
What is the opposite of '{w}'? | The opposite of '{w}' is '{o}'.
Give me an antonym of '{w}'. | An antonym of '{w}' is '{o}'.
What's the antonym of '{w}'? | The antonym of '{w}' is '{o}'.
Name a word that means the opposite of '{w}'. | '{o}' means the opposite of '{w}'.
Opposite of '{w}'? | The opposite of '{w}' is '{o}'.""",
    "antonym.zh": """
“{w}”的反义词是什么？ | “{w}”的反义词是“{o}”。
请说出“{w}”的反义词。 | “{w}”的反义词是“{o}”。
和“{w}”意思相反的词是什么？ | 和“{w}”意思相反的是“{o}”。
给“{w}”找一个反义词。 | “{w}”的反义词是“{o}”。
“{w}”的反义词？ | “{w}”的反义词是“{o}”。""",
    "translate.en": """
How do you say '{e}' in Chinese? | '{e}' in Chinese is {z}.
What is the Chinese word for '{e}'? | The Chinese word for '{e}' is {z}.
Translate '{e}' into Chinese. | '{e}' in Chinese is {z}.
What's '{e}' in Mandarin? | In Mandarin, '{e}' is {z}.
What does {z} mean in English? | {z} means '{e}' in English.
Translate {z} into English. | {z} in English is '{e}'.""",
    "translate.zh": """
“{z}”用英语怎么说？ | “{z}”的英文是 {e}。
“{z}”的英文是什么？ | “{z}”的英文是 {e}。
把“{z}”翻译成英文。 | “{z}”翻译成英文是 {e}。
英文单词 {e} 是什么意思？ | {e} 的意思是“{z}”。
{e} 翻译成中文是什么？ | {e} 翻译成中文是“{z}”。
{e} 用中文怎么说？ | {e} 的中文是“{z}”。""",
    "parity.en": """
Is {n} odd or even? | {n} is {p}.
Tell me whether {n} is odd or even. | {n} is {p}.
Is the number {n} even or odd? | {n} is {p}.
Odd or even: {n}? | {n} is {p}.
Is {n} an even number? | {yes}{n} is {p}.""",
    "parity.zh": """
{n} 是奇数还是偶数？ | {n} 是{p}。
判断 {n} 的奇偶性。 | {n} 是{p}。
{n} 是单数还是双数？ | {n} 是{p}。
请问 {n} 是偶数还是奇数？ | {n} 是{p}。
{n} 是偶数吗？ | {yes}{n} 是{p}。""",
    "compare.en": """
Which is larger, {a} or {b}? | {x} is larger than {y}.
Which is bigger: {a} or {b}? | {x} is bigger than {y}.
Which number is smaller, {a} or {b}? | {y} is smaller than {x}.
Is {a} greater than {b}? | {yes}
Compare {a} and {b}. | {x} is greater than {y}.""",
    "compare.zh": """
{a} 和 {b} 哪个大？ | {x} 比 {y} 大。
{a} 和 {b} 哪个更小？ | {y} 比 {x} 小。
比较 {a} 和 {b} 的大小。 | {x} 大于 {y}。
{a} 比 {b} 大吗？ | {yes}
{a} 与 {b} 中较大的是哪个？ | 较大的是 {x}。""",
}


def table(text):
    return [[field.strip() for field in line.split(" | ")] for line in text.strip().splitlines()]


CAPITALS = table(CAPITALS)
ANTONYMS_EN, ANTONYMS_ZH, WORDS = (
    [p.split() for p in t.split("|")] for t in (ANTONYMS_EN, ANTONYMS_ZH, WORDS)
)
TEMPLATES = {name: table(text) for name, text in TEMPLATES.items()}


# ---- value makers: each returns the fields its templates use ---------------------------------------------
def arith(lang):
    op = r.choice("+-×")
    a, b = (r.randint(2, 12), r.randint(2, 12)) if op == "×" else (r.randint(1, 99), r.randint(1, 99))
    if op == "-":
        a, b = max(a, b), min(a, b)
    return dict(a=a, b=b, op=op, w=OP_WORDS[lang][op], c={"+": a + b, "-": a - b, "×": a * b}[op])


def units(lang):
    fu, tu, fz, tz, factor, values = r.choice(UNITS)
    x = r.choice(values)
    y = f"{round(x * factor, 3):g}"  # 3.0 -> "3", 2.5 -> "2.5"
    if lang == "zh":
        return dict(x=x, y=y, f=fz, t=tz)
    return dict(x=x, y=y, f=fu + "s" * (x != 1), t=tu + "s" * (y != "1"))


def spelling(lang):
    w = r.choice(SPELL)
    c = r.choice(sorted(set(w)))
    n = w.count(c)
    return dict(w=w, c=c, n=n, times="time" if n == 1 else "times", r=w[::-1], l=len(w))


def calendar(lang):
    days, months = DAYS[lang], MONTHS[lang]
    i, j, k = r.randrange(7), r.randrange(12), r.randint(2, 6)
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(j + 1, "th")
    return dict(d=days[i], nd=days[(i + 1) % 7], pd=days[i - 1], k=k, kd=days[(i + k) % 7], m=months[j],
                nm=months[(j + 1) % 12], pm=months[j - 1], n=j + 1, o=f"{j + 1}{suffix}")  # fmt: skip


def capital(lang):
    ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
    return dict(c=ce, k=ke) if lang == "en" else dict(c=cz, k=kz)


def antonym(lang):
    w, o = r.sample(r.choice(ANTONYMS_EN if lang == "en" else ANTONYMS_ZH), 2)
    return dict(w=w, o=o)


def translate(lang):
    e, z = r.choice(WORDS)
    return dict(e=e, z=z)


def parity(lang):
    n = r.randint(1, 999)
    even = n % 2 == 0
    if lang == "en":
        p = "even, because it is divisible by 2" if even else "odd, because it is not divisible by 2"
        return dict(n=n, p=p, yes="Yes, " if even else "No, ")
    p = "偶数，因为它能被 2 整除" if even else "奇数，因为它不能被 2 整除"
    return dict(n=n, p=p, yes="是的，" if even else "不是，")


def compare(lang):
    if r.random() < 0.25:  # same whole part, different decimals (3.9 vs 3.11): a classic trap
        i = r.randint(0, 20)
        a, b = f"{i}.{r.randint(1, 9)}", f"{i}.{r.choice([d for d in range(11, 100) if d % 10])}"
    else:
        a, b = str(r.randint(1, 999)), str(r.randint(1, 999))
    if float(a) == float(b):
        return compare(lang)
    a, b = r.sample([a, b], 2)
    x, y = (a, b) if float(a) > float(b) else (b, a)
    if lang == "en":
        yes = f"Yes, {a} is greater than {b}." if x == a else f"No, {a} is less than {b}."
    else:
        yes = f"是的，{a} 比 {b} 大。" if x == a else f"不是，{a} 比 {b} 小。"
    return dict(a=a, b=b, x=x, y=y, yes=yes)


def make(family, lang):
    """One templated (question, answer, values) of a family."""
    v = family(lang)
    q, a = r.choice(TEMPLATES[f"{family.__name__}.{lang}"])
    return q.format(**v), a.format(**v), v


CJK = re.compile(r"[\u4e00-\u9fff]")


def is_zh(text):
    return CJK.search(text) is not None
