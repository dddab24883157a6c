"""The LangGraph side of tests/bench/langgraph_compare.py: the graph (graph.py) and `langgraph dev`'s
langgraph.json. graph.py imports nothing of Everloop's: `langgraph dev` loads it from its own
virtualenv (.tools/langgraph, from requirements.txt here)."""
