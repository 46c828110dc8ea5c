// The Boost.Test runner shared by every file in tests/unit/.
#define BOOST_TEST_MODULE halsal
#include <boost/test/unit_test.hpp>
