int main() { return halsal::detail::secret(); }
