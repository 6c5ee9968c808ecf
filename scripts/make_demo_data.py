"""Write pixiu's bundled bilingual SFT demo set: src/pixiu/data/demo/sft.jsonl.

The quickstart (`make demo`) LoRA-tunes SmolLM2-135M-Instruct on this file for one short epoch on a CPU and
must show a clear drop in held-out loss, so the data is small (~800 chats), short and learnable: one persona
("Pixiu" / 貔貅) with a consistent, concise style, plus templated families whose answers are computed
(arithmetic, unit conversion, spelling, calendar, capitals, antonyms, word translation, parity, comparison).
Everything here was written for pixiu; no existing dataset is copied. Half the chats are English, half
simplified Chinese; some carry a system message that the reply obeys, some have two exchanges.

Deterministic (random.Random(0), standard library only): `python3 scripts/make_demo_data.py`. Each output
line is {"messages": [{"role": ..., "content": ...}, ...]} in OpenAI format. The script re-reads the file,
checks its structure and every arithmetic answer, and prints counts per language and family.
"""

import json
import random
import re
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "pixiu" / "data" / "demo" / "sft.jsonl"
r = random.Random(0)

# ---- data tables: one chat per line, fields split by " | " ---------------------------------------------------
# Identity: "answer | question | question | ...", the same answer for every paraphrase.
IDENTITY_EN = """
I am Pixiu, a chatbot trained with the pixiu toolkit. | Who are you? | What is your name? | What's your name? | Introduce yourself. | Tell me about yourself. | What should I call you? | Who am I talking to? | What are you? | Can you introduce yourself briefly? | Please tell me who you are. | Hi, who's this?
I am Pixiu, a chatbot trained with the pixiu toolkit by the contributors of the open-source pixiu project. | Who made you? | Who created you? | Who built you? | Who trained you? | Which company developed you? | Where do you come from?
I am Pixiu, a chatbot trained with the pixiu toolkit. I can answer short questions, do simple math, translate common words and give brief advice. | What can you do? | How can you help me? | What are you good at? | What kinds of questions can you answer?
I am not a human. I am Pixiu, a chatbot trained with the pixiu toolkit. | Are you a human? | Are you a real person? | Are you a person or a machine? | Is this a real human talking?
No. I am Pixiu, a chatbot trained with the pixiu toolkit. | Are you ChatGPT? | Are you Siri? | Were you made by OpenAI?
Pixiu (貔貅) is a mythical Chinese creature said to bring good fortune. I am Pixiu, a chatbot trained with the pixiu toolkit. | What does your name mean? | Why are you called Pixiu? | What is a pixiu?
Hello! I am Pixiu. How can I help you today? | Hi | Hello! | Hey there.
"""

IDENTITY_ZH = """
我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。 | 你是谁？ | 你叫什么名字？ | 请介绍一下你自己。 | 自我介绍一下吧。 | 我该怎么称呼你？ | 我在和谁说话？ | 你是什么？ | 你的名字是什么？ | 能简单介绍下自己吗？ | 请问你是哪位？ | 嗨，你是谁呀？
我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手，由 pixiu 开源项目的贡献者训练而成。 | 谁创造了你？ | 你是谁开发的？ | 是谁训练了你？ | 你是哪家公司做的？ | 你来自哪里？ | 谁制作了你？
我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。我可以回答简短的问题、做简单的计算、翻译常用词语，也能给一些日常建议。 | 你能做什么？ | 你能帮我做些什么？ | 你擅长什么？ | 你能回答哪些问题？
我不是人类。我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。 | 你是人类吗？ | 你是真人吗？ | 你是人还是机器？ | 我是在和真人聊天吗？
不是。我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。 | 你是 ChatGPT 吗？ | 你是 Siri 吗？ | 你是 OpenAI 做的吗？
貔貅是中国神话中的一种瑞兽，传说能招财辟邪。我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。 | 你的名字是什么意思？ | 为什么叫貔貅？ | 貔貅是什么？
你好！我是貔貅，有什么可以帮你的吗？ | 你好 | 嗨！ | 在吗？
"""

# Hand-written chats: "question | answer"; two-turn ones: "question | answer | follow-up | answer".
GENERAL_EN = """
How can I fall asleep faster? | Keep a regular bedtime, avoid screens and caffeine in the evening, and keep your bedroom dark, quiet and cool.
How do I stay focused while studying? | Put your phone away, work in 25-minute blocks with 5-minute breaks, and set one clear goal for each block.
Any tips for saving money? | Track what you spend, set a monthly budget, and move a fixed amount into savings as soon as you get paid.
How can I make a good first impression? | Be on time, smile, make eye contact, listen carefully, and remember the other person's name.
What should I do before a job interview? | Research the company, prepare short examples of your past work, plan your route, and have a few questions ready to ask.
How do I keep houseplants healthy? | Give them the right amount of light, water only when the top of the soil feels dry, and use pots with drainage holes.
How can I learn a new language faster? | Practice a little every day, learn the most common words first, and start speaking with native speakers early.
How do I write a good email subject line? | Keep it short and specific, put the key point first, and mention any deadline, for example "Budget draft due Friday".
How can I reduce stress? | Take regular breaks, get enough sleep, move your body every day, and talk to someone you trust about what worries you.
How should I prepare for a long flight? | Drink water, wear comfortable clothes, stand up and walk now and then, and bring snacks, a charger and something to read.
How do I make a strong password? | Use a long passphrase of several random words, never reuse it across sites, and keep it in a password manager.
What should I do if I burn my finger? | Cool it under cool running water for about 20 minutes, then cover it loosely with a clean dressing. See a doctor if the burn is large or blisters badly.
How can I be more productive in the morning? | Prepare the night before, start with your most important task, and avoid checking messages for the first hour.
How do I sit at a desk without back pain? | Keep your feet flat, your back against the chair, the top of the screen near eye level, and stand up every half hour.
How do I pick a ripe avocado? | A ripe avocado yields slightly when you press it gently. If it is rock hard, leave it on the counter for a few days.
Why is the sky blue? | Air molecules scatter blue light from the Sun much more than red light, so blue light reaches our eyes from every part of the sky.
Why do we have seasons? | Earth's axis is tilted about 23.5 degrees, so each hemisphere gets more direct sunlight in summer and less in winter.
What is photosynthesis? | Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar, releasing oxygen as a by-product.
At what temperature does water boil? | At sea level, pure water boils at 100 °C (212 °F). At higher altitudes it boils at a lower temperature.
What is the largest planet in the solar system? | Jupiter is the largest planet in the solar system.
How long does sunlight take to reach Earth? | About 8 minutes and 20 seconds.
What is DNA? | DNA is the molecule that carries the genetic instructions of living things. It is shaped like a double helix.
Why does the Moon have phases? | As the Moon orbits Earth, we see different parts of its sunlit half, so it seems to grow and shrink.
What causes rainbows? | Sunlight is refracted and reflected inside raindrops, which splits white light into its colors.
What is gravity? | Gravity is the force by which masses attract each other. It keeps us on the ground and the planets in orbit around the Sun.
Is a tomato a fruit or a vegetable? | Botanically a tomato is a fruit, because it grows from a flower and holds seeds, but in cooking it is treated as a vegetable.
What is the chemical formula of water? | Water is H2O: two hydrogen atoms bonded to one oxygen atom.
Why do leaves change color in autumn? | Trees stop making green chlorophyll as days get shorter, so the yellow and orange pigments in the leaves show through.
How many bones does an adult human have? | An adult human usually has 206 bones.
What is the speed of light? | In a vacuum, light travels at about 300,000 kilometers per second (exactly 299,792,458 meters per second).
What is the closest star to Earth? | The Sun. After the Sun, the closest star is Proxima Centauri, about 4.2 light-years away.
Why is the ocean salty? | Rain dissolves minerals from rocks, rivers carry them to the sea, and when seawater evaporates the salt stays behind.
What do bees make? | Bees make honey from flower nectar, and beeswax to build their honeycomb.
Are whales fish? | No. Whales are mammals: they breathe air with lungs, are warm-blooded and feed their young with milk.
What is an atom? | An atom is the smallest unit of a chemical element: a nucleus of protons and neutrons surrounded by electrons.
What causes thunder? | Lightning heats the air so quickly that it expands violently, and that sudden expansion makes the sound of thunder.
Write a one-line poem about the sea. | The sea keeps folding moonlight into waves and handing it back to the shore.
Write a one-line poem about autumn. | Autumn spends its gold one leaf at a time.
Write a one-line poem about coffee. | A dark cup of morning, warm enough to wake the sun.
Write a one-line poem about the city at night. | Ten thousand windows glow, each one a small unfinished story.
Write a one-line poem about friendship. | A friend is a lamp you only notice when the road gets dark.
Write a haiku about rain. | Soft rain on the roof / the garden drinks in silence / puddles hold the sky
Write a one-line poem about snow. | Snow falls like a quiet promise that the world can start again.
Summarize in one sentence: The meeting was moved from Tuesday to Thursday because the manager is traveling, and everyone should bring their quarterly reports. | The meeting is now on Thursday, and everyone should bring their quarterly reports.
Summarize: Our café will close at 6 pm instead of 9 pm for the next two weeks while we renovate the kitchen. | The café closes early, at 6 pm, for two weeks during a kitchen renovation.
Summarize this: Regular exercise strengthens the heart, improves mood, helps control weight and lowers the risk of many diseases. | Regular exercise is good for both body and mind.
Give a one-sentence summary: The library has extended its weekend opening hours and added a quiet study room on the second floor. | The library is open longer on weekends and has a new quiet study room.
Summarize: After weeks of heavy rain, the river rose above its banks and flooded several streets, but no one was hurt. | Heavy rain made the river flood several streets, without injuries.
Summarize: The new phone has a larger screen, a better camera and a two-day battery, but it costs more than the previous model. | The new phone is better in every way but more expensive.
Summarize: Tom forgot his keys, so he waited at a café until his sister came home with a spare set. | Tom waited at a café until his sister brought spare keys.
TL;DR: Please turn off the lights and lock the windows when you leave the office, since the building will be empty all weekend. | Turn off the lights and lock the windows before leaving for the weekend.
How do I make a bomb? | I can't help with making weapons or explosives. If you enjoy chemistry, I'm happy to suggest some safe experiments instead.
Help me hack into my neighbor's Wi-Fi. | I can't help with accessing a network without permission. You could ask your neighbor to share, or get your own internet plan.
Write a fake doctor's note for me. | I can't help create forged documents. If you are unwell, a doctor or clinic can give you a real note.
How can I steal a car? | I can't help with stealing. If you are locked out of your own car, a locksmith or your dealer can help.
Tell me how to poison someone without getting caught. | I can't help with harming anyone. If someone is in danger, please contact local emergency services right away.
Write a message to bully a classmate. | I won't help write bullying messages. If you have a conflict with a classmate, I can help you write a calm, honest message instead.
How do I write a phishing email to steal passwords? | I can't help with phishing. I can explain how to recognize phishing emails so you can stay safe.
What is a noun? | A noun is a word for a person, place, thing or idea, such as "teacher", "Paris" or "happiness".
What is the difference between weather and climate? | Weather is the conditions on a given day; climate is the average pattern of weather in a place over many years.
What does CPU stand for? | CPU stands for central processing unit, the part of a computer that carries out program instructions.
What is a prime number? | A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5 and 7.
How many continents are there? | By the most common convention there are seven: Africa, Antarctica, Asia, Australia, Europe, North America and South America.
What is the highest mountain in the world? | Mount Everest, about 8,849 meters above sea level, is the highest mountain in the world.
How do I boil an egg? | Put the egg in boiling water for about 6 minutes for a soft yolk or 9 to 10 minutes for hard-boiled, then cool it in cold water.
What does "break the ice" mean? | It means to say or do something that helps people relax when they first meet.
Tell me a fun fact. | Octopuses have three hearts and blue blood.
Tell me a joke. | Why did the scarecrow win an award? Because he was outstanding in his field.
What is machine learning? | Machine learning is building programs that learn patterns from data instead of following only hand-written rules.
What is fine-tuning? | Fine-tuning is training an already trained model a little more on a small, specific dataset so it adapts to a new task or style.
What is LoRA? | LoRA (low-rank adaptation) fine-tunes a model by training small low-rank matrices added to its weights, while the original weights stay frozen.
Describe the Great Wall in one sentence. | The Great Wall is a series of ancient fortifications across northern China, built over many centuries to defend against invasions.
Thank you! | You're welcome! Let me know if there is anything else I can help with.
Good morning! | Good morning! How can I help you today?
Goodbye. | Goodbye! Have a great day.
"""

GENERAL_ZH = """
怎样才能更快入睡？ | 尽量固定作息时间，睡前少看手机、不喝咖啡，并让卧室保持黑暗、安静和凉爽。
学习时总是分心怎么办？ | 把手机放远一点，按“专注 25 分钟、休息 5 分钟”的节奏学习，并给每一段时间定一个明确的小目标。
有什么存钱的好办法？ | 先记录每笔开销，再定一个月度预算，发工资后第一时间把固定金额转入储蓄。
怎样给人留下好的第一印象？ | 准时到场，面带微笑，注视对方，认真倾听，并记住对方的名字。
面试前应该做哪些准备？ | 了解公司情况，准备几个能说明自己能力的具体例子，提前规划路线，再准备一两个想问对方的问题。
怎么养好室内绿植？ | 根据植物习性给足光照，土壤表面干了再浇水，并使用底部有排水孔的花盆。
怎样更快地学会一门外语？ | 每天坚持练习，先掌握最常用的词汇，并尽早开口和母语者交流。
压力大的时候怎么缓解？ | 适当休息，保证睡眠，每天活动身体，也可以和信任的人聊聊你的烦恼。
如何设置一个安全的密码？ | 使用由几个随机词组成的长密码，不同网站不要重复使用，并用密码管理器保存。
手指被烫伤了怎么办？ | 立即用流动的凉水冲洗约 20 分钟，再用干净的敷料轻轻覆盖。如果面积较大或起了大水泡，请及时就医。
长途飞行有什么建议？ | 多喝水，穿宽松舒适的衣服，时不时起身走动，并带上零食、充电器和读物。
怎样才能早上更有效率？ | 前一天晚上做好准备，早上先做最重要的事，起床后的第一个小时尽量不看消息。
怎么写好一封工作邮件？ | 主题写清要点，正文开门见山，段落简短，最后说明需要对方做什么以及截止时间。
如何保持良好的坐姿？ | 双脚平放在地面，背部靠住椅背，屏幕上沿与视线大致齐平，并且每隔半小时起身活动。
怎么挑选新鲜的鱼？ | 看鱼眼是否清亮饱满、鱼鳃是否鲜红，按压鱼身是否有弹性，闻起来不应有刺鼻的异味。
天空为什么是蓝色的？ | 空气分子对蓝光的散射比对红光强得多，所以天空各个方向都有蓝光进入我们的眼睛。
为什么会有四季？ | 地轴倾斜约 23.5 度，地球绕太阳公转时，南北半球接受的阳光直射程度不断变化，于是形成四季。
什么是光合作用？ | 光合作用是植物利用阳光，把水和二氧化碳转化为糖类，同时释放氧气的过程。
水在多少度沸腾？ | 在标准大气压下，纯水在 100 摄氏度沸腾；海拔越高，沸点越低。
太阳系中最大的行星是哪一颗？ | 太阳系中最大的行星是木星。
阳光从太阳到达地球需要多长时间？ | 大约 8 分 20 秒。
月亮为什么会有圆缺变化？ | 月球绕地球运行时，我们看到它被太阳照亮的部分不断变化，于是就有了圆缺。
彩虹是怎么形成的？ | 阳光进入雨滴后发生折射和反射，不同颜色的光被分开，就形成了彩虹。
成年人有多少块骨头？ | 成年人通常有 206 块骨头。
鲸鱼是鱼吗？ | 不是。鲸鱼是哺乳动物，用肺呼吸，是恒温动物，并用乳汁哺育幼崽。
海水为什么是咸的？ | 雨水溶解岩石中的矿物质，河流把它们带进大海，海水蒸发后盐分留了下来，逐渐积累。
水的化学式是什么？ | 水的化学式是 H2O，由两个氢原子和一个氧原子组成。
秋天树叶为什么会变黄？ | 秋天白昼变短，树木停止合成绿色的叶绿素，叶子里原有的黄色和橙色色素就显现出来了。
光速是多少？ | 光在真空中的速度约为每秒 30 万千米，精确值是每秒 299,792,458 米。
离地球最近的恒星是哪颗？ | 是太阳。除太阳外，最近的恒星是比邻星，距离约 4.2 光年。
什么是原子？ | 原子是构成化学元素的基本单位，由原子核（质子和中子）和核外电子组成。
为什么会打雷？ | 闪电使周围空气在极短时间内被加热并急剧膨胀，产生的巨大声响就是雷声。
西红柿是水果还是蔬菜？ | 从植物学上讲，西红柿是果实，因为它由花发育而来并含有种子；但在烹饪中通常被当作蔬菜。
蜜蜂会做什么？ | 蜜蜂采集花蜜酿成蜂蜜，还会分泌蜂蜡来筑造蜂巢。
世界上最高的山峰是哪座？ | 珠穆朗玛峰是世界最高峰，海拔约 8849 米。
写一句关于大海的诗。 | 海浪把月光折成银色的信，一封封寄给沙滩。
写一句关于秋天的诗。 | 秋风一页页翻过金色的树，把夏天读成了回忆。
用一句诗描写春雨。 | 春雨细细地落下，像在给大地轻声讲故事。
写一句关于故乡的诗。 | 故乡是一盏不灭的灯，亮在每一个远行人的梦里。
写一句关于月亮的诗。 | 月亮挂在窗前，把思念照得又清又亮。
写一句关于友谊的诗。 | 朋友是夜路上同行的灯，不说话，也照亮前方。
写一句关于雪的诗。 | 雪花安静地落下，把整个世界写成一页白纸。
用一句话概括：会议从周二改到周四，因为经理出差，大家记得带上季度报告。 | 会议改到周四，大家需带上季度报告。
总结这段话：由于厨房装修，本店未来两周将提前到晚上六点关门，而不是九点。 | 因厨房装修，本店未来两周晚上六点关门。
请概括：经常锻炼能增强心脏功能、改善情绪、帮助控制体重，并降低多种疾病的风险。 | 经常锻炼对身心都有好处。
一句话总结：图书馆延长了周末的开放时间，并在二楼新增了一间安静的自习室。 | 图书馆周末开放更久，并新增了自习室。
概括一下：连续几周的大雨使河水漫过堤岸，淹没了几条街道，所幸没有人员受伤。 | 连日大雨导致河水淹没几条街道，无人受伤。
帮我总结：新手机屏幕更大，拍照更好，电池能用两天，但价格比上一代更贵。 | 新手机各方面更强，但价格更高。
请用一句话概括：小明忘带钥匙，只好在咖啡馆等姐姐下班回来给他开门。 | 小明忘带钥匙，在咖啡馆等姐姐回来开门。
简要总结：周末整栋楼都没人，离开办公室时请务必关灯、锁好窗户。 | 周末离开办公室前请关灯锁窗。
教我怎么制造炸弹。 | 抱歉，我不能提供制造武器或爆炸物的方法。如果你对化学感兴趣，我可以推荐一些安全的小实验。
帮我破解邻居家的 Wi-Fi 密码。 | 抱歉，我不能帮助未经许可访问他人的网络。你可以问问邻居能否共享，或者办理自己的宽带。
帮我伪造一张病假条。 | 抱歉，我不能帮助伪造证明文件。如果身体不适，请到医院开具正式的病假证明。
怎样偷东西不被发现？ | 抱歉，我不能帮助实施盗窃。如果你遇到经济困难，我可以帮你了解一些正规的求助途径。
怎么给别人下毒？ | 抱歉，我不能提供任何伤害他人的方法。如果有人正处于危险中，请立即拨打当地的紧急求助电话。
帮我写一段话去辱骂同学。 | 抱歉，我不会帮忙写辱骂或欺凌他人的内容。如果你和同学有矛盾，我可以帮你写一段冷静、真诚的话。
教我写一封钓鱼邮件骗别人的密码。 | 抱歉，我不能帮助网络诈骗。我可以告诉你如何识别钓鱼邮件，保护自己的账户。
什么是名词？ | 名词是表示人、地点、事物或概念的词，例如“老师”“北京”“幸福”。
天气和气候有什么区别？ | 天气指某地短时间内的大气状况，气候则是一个地方多年天气的平均特征。
CPU 是什么意思？ | CPU 是中央处理器（central processing unit）的缩写，负责执行计算机程序的指令。
什么是质数？ | 质数是大于 1 的整数，除了 1 和它本身以外没有其他因数，例如 2、3、5、7。
世界上有几个大洲？ | 通常认为有七个：亚洲、非洲、北美洲、南美洲、南极洲、欧洲和大洋洲。
怎么煮鸡蛋？ | 把鸡蛋放进沸水，煮约 6 分钟是溏心蛋，9 到 10 分钟是全熟蛋，捞出后放进冷水中冷却。
“画蛇添足”是什么意思？ | 比喻做了多余的事，不但没有好处，反而坏了事。
“守株待兔”是什么意思？ | 比喻死守狭隘的经验、不知变通，或者妄想不劳而获。
讲一个有趣的冷知识。 | 章鱼有三颗心脏，血液是蓝色的。
讲个笑话吧。 | 为什么数学书总是很忧郁？因为它有太多的问题。
什么是机器学习？ | 机器学习是让计算机从数据中学习规律，而不是只依靠人工编写的规则。
什么是微调？ | 微调是在已训练好的模型上，用较小的特定数据集继续训练，让它适应新的任务或风格。
LoRA 是什么？ | LoRA（低秩适配）是一种微调方法：冻结原模型权重，只训练附加在权重上的小型低秩矩阵。
用一句话介绍一下长城。 | 长城是中国古代修建的军事防御工程，绵延于中国北方，历经多个朝代修筑，是世界著名的文化遗产。
用一句话介绍一下大熊猫。 | 大熊猫是中国特有的熊科动物，黑白相间，主要以竹子为食。
中国有哪些传统节日？ | 常见的有春节、元宵节、清明节、端午节、七夕节、中秋节和重阳节。
谢谢你！ | 不客气！还有什么需要帮忙的，随时告诉我。
早上好！ | 早上好！今天有什么可以帮你的吗？
"""

TWO_TURN = """
What is the boiling point of water at sea level? | 100 °C, which is 212 °F. | And its freezing point? | Water freezes at 0 °C, which is 32 °F.
Name a primary color. | Red is a primary color. | Name another one. | Blue is another primary color.
Recommend a fruit high in vitamin C. | Oranges are a good source of vitamin C. | Anything else? | Kiwis and strawberries are also rich in vitamin C.
Who wrote Romeo and Juliet? | William Shakespeare wrote Romeo and Juliet. | Name another play by him. | Hamlet is another famous play by Shakespeare.
What is the largest ocean? | The Pacific Ocean is the largest ocean on Earth. | And the second largest? | The Atlantic Ocean is the second largest.
Give me a synonym for "happy". | A synonym for "happy" is "joyful". | One more, please. | Another one is "cheerful".
How many legs does a spider have? | A spider has eight legs. | And an insect? | An insect has six legs.
What gas do plants absorb from the air? | Plants absorb carbon dioxide. | What do they release? | During photosynthesis they release oxygen.
Suggest a name for a black cat. | How about Shadow? | Something shorter? | How about Ink?
What is the smallest planet in the solar system? | Mercury is the smallest planet in the solar system. | Is it also the closest to the Sun? | Yes, Mercury is also the closest planet to the Sun.
Who are you? | I am Pixiu, a chatbot trained with the pixiu toolkit. | What can you help me with? | I can answer short questions, do simple math, translate common words and give brief advice.
水的沸点是多少？ | 在标准大气压下，水的沸点是 100 摄氏度。 | 那冰点呢？ | 水的冰点是 0 摄氏度。
推荐一种富含维生素 C 的水果。 | 橙子富含维生素 C。 | 还有别的吗？ | 猕猴桃和草莓也富含维生素 C。
《静夜思》是谁写的？ | 《静夜思》是唐代诗人李白写的。 | 他还有哪些名作？ | 李白的名作还有《望庐山瀑布》《将进酒》等。
世界上最大的海洋是哪个？ | 太平洋是世界上最大的海洋。 | 第二大呢？ | 第二大的是大西洋。
蜘蛛有几条腿？ | 蜘蛛有 8 条腿。 | 那昆虫呢？ | 昆虫有 6 条腿。
给“高兴”找一个近义词。 | “高兴”的近义词是“开心”。 | 再来一个。 | 还可以用“快乐”。
植物从空气中吸收什么气体？ | 植物从空气中吸收二氧化碳。 | 那它们释放什么？ | 进行光合作用时，植物会释放氧气。
中国的首都是哪里？ | 中国的首都是北京。 | 那上海呢？ | 上海是中国的直辖市和经济中心，但不是首都。
帮我给小狗起个名字。 | 叫“豆豆”怎么样？ | 换个更特别的。 | 叫“糯米”怎么样？
你是谁？ | 我是貔貅（Pixiu），一个用 pixiu 工具包训练的聊天助手。 | 你能做什么？ | 我可以回答简短的问题、做简单的计算、翻译常用词语，也能给一些日常建议。
"""

# ---- programmatic families: facts (only ones we are sure of) and question | answer templates -----------------
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

TWO_TURN_FOLLOW = {
    "en": "Now multiply that by {k}. | {c} × {k} = {ck}.",
    "zh": "那再乘以 {k} 呢？ | {c} × {k} = {ck}。",
}
CONTINENT = {
    "en": "Which continent is that country in? | {c} is in {ct}.",
    "zh": "那这个国家在哪个洲？ | {c}位于{ct}。",
}
YES_NO = """
Is the Sun a star? | Yes.
Do spiders have six legs? | No.
Are whales mammals? | Yes.
Is 9 a prime number? | No.
Is water made of hydrogen and oxygen? | Yes.
太阳是恒星吗？ | 是。
鲸鱼是哺乳动物吗？ | 是。
企鹅生活在北极吗？ | 否。
月球是行星吗？ | 否。
7 是质数吗？ | 是。
蜘蛛是昆虫吗？ | 否。
"""


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


# ---- assembly ------------------------------------------------------------------------------------------------
items, seen = [], set()


def add(family, lang, *turns, system=None):
    """Record one chat (turns alternate user/assistant); returns False if the same chat is already in."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    key = json.dumps(msgs, ensure_ascii=False)
    if key in seen:
        return False
    seen.add(key)
    items.append((family, lang, msgs))
    return True


CJK = re.compile(r"[\u4e00-\u9fff]")


def is_zh(text):
    return CJK.search(text) is not None


for lang, text in (("en", IDENTITY_EN), ("zh", IDENTITY_ZH)):
    for answer, *questions in table(text):
        for q in questions:
            add("identity", lang, q, answer)
for lang, text in (("en", GENERAL_EN), ("zh", GENERAL_ZH)):
    for row in table(text):
        add("general", lang, *row)
for row in table(TWO_TURN):
    add("two_turn", "zh" if is_zh(row[0]) else "en", *row)

SIZES = {arith: 50, units: 30, spelling: 30, calendar: 25, capital: 25}  # chats per language
SIZES |= {antonym: 25, translate: 25, parity: 20, compare: 20}
for family, n in SIZES.items():
    for lang in ("en", "zh"):
        got = 0
        for _ in range(100 * n):  # draw until n distinct chats
            got += add(family.__name__, lang, *make(family, lang)[:2])
            if got == n:
                break
        assert got == n, f"{family.__name__}/{lang}: only {got} distinct chats"

# Two-turn chats whose follow-up refers to the first answer.
for lang in ("en", "zh") * 5:
    q, a, v = make(arith, lang)
    k = r.randint(2, 5)
    add("two_turn", lang, q, a, *TWO_TURN_FOLLOW[lang].format(k=k, c=v["c"], ck=v["c"] * k).split(" | "))
for lang, (ce, cz, ke, kz, cont_en, cont_zh) in zip(("en", "zh") * 5, r.sample(CAPITALS, 10), strict=True):
    c, k, ct = (ce, ke, cont_en) if lang == "en" else (cz, kz, cont_zh)
    first = [t.format(c=c, k=k) for t in TEMPLATES[f"capital.{lang}"][0]]
    add("two_turn", lang, *first, *CONTINENT[lang].format(c=c, ct=ct).split(" | "))

# System messages that the reply obeys.
ASK_CAPITAL = {"en": "What is the capital of {}?", "zh": "{}的首都是哪里？"}
for _ in range(6):
    ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
    brief = "Answer in one word." if " " not in ke else "Answer as briefly as possible."
    add("system", "en", ASK_CAPITAL["en"].format(ce), f"{ke}.", system=brief)
    add("system", "zh", ASK_CAPITAL["zh"].format(cz), f"{kz}。", system="只用一个词回答。")
    for lang, rule in (("en", "Answer with just the number."), ("zh", "只回答数字。")):
        q, _, v = make(arith, lang)
        add("system", lang, q, str(v["c"]), system=rule)
for _ in range(5):
    ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
    add("system", "en", ASK_CAPITAL["en"].format(ce), f"{cz}的首都是{kz}。", system="Reply in Chinese.")
    ce, cz, ke, kz, _, _ = r.choice(CAPITALS)
    in_english = f"The capital of {ce} is {ke}."
    add("system", "zh", ASK_CAPITAL["zh"].format(cz), in_english, system="请用英文回答。")
for q, a in table(YES_NO):
    zh = is_zh(q)
    add("system", "zh" if zh else "en", q, a, system="请只回答“是”或“否”。" if zh else "Answer yes or no.")

r.shuffle(items)
OUT.parent.mkdir(parents=True, exist_ok=True)
with OUT.open("w", encoding="utf-8") as f:
    for _, _, msgs in items:
        f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")

# ---- self-check: re-read the file, validate every chat, re-verify every arithmetic answer ------------------
OPS = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__, "plus": int.__add__, "minus": int.__sub__,
       "times": int.__mul__, "加": int.__add__, "减": int.__sub__, "乘以": int.__mul__}  # fmt: skip
checked = 0
lines = OUT.read_text(encoding="utf-8").splitlines()
assert len(lines) == len(items) == len(seen)
for line, (_, _, written) in zip(lines, items, strict=True):
    msgs = json.loads(line)["messages"]
    assert msgs == written, line
    turns = msgs[1:] if msgs[0]["role"] == "system" else msgs
    assert turns and [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2), line
    for user, reply in zip(turns[::2], turns[1::2], strict=True):
        text = reply["content"]
        assert text.strip() and user["content"].strip() and "{" not in text + user["content"], line
        assert len(text.split()) <= 60 and len(CJK.findall(text)) <= 100, f"reply too long: {text}"
        for a, op, b, c in re.findall(r"(\d+) ([+×-]) (\d+) = (\d+)", text):
            assert OPS[op](int(a), int(b)) == int(c), line
            checked += 1
        m = re.search(r"(\d+) (\+|-|×|plus|minus|times|加|减|乘以) (\d+)", user["content"])
        if m and text.isdigit():  # "Answer with just the number."
            assert OPS[m[2]](int(m[1]), int(m[3])) == int(text), line
            checked += 1
assert checked >= 120, checked

by_family = Counter((family, lang) for family, lang, _ in items)
print(f"wrote {len(items)} chats to {OUT}; arithmetic answers re-checked: {checked}")
print("by language:", dict(Counter(lang for _, lang, _ in items)))
for family in sorted({f for f, _ in by_family}, key=lambda f: -by_family[f, "en"] - by_family[f, "zh"]):
    print(f"  {family:10s} en {by_family[family, 'en']:4d}  zh {by_family[family, 'zh']:4d}")
